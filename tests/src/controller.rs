//! A fairway-controller in-process against the test cluster, wired like
//! `fairway_controller::process` (index, store publisher, Kubernetes sources with the
//! status writer, gRPC Discovery server) but with a test's own settings: the client
//! comes from the cluster's kubeconfig for the caller's runtime, it watches one
//! namespace, and its status Lease lives in that namespace, so parallel tests never
//! compete for one Lease.
//!
//! Also installs the Route CRD once per test binary ([`cluster_with_crd`]).

use std::sync::{Arc, OnceLock};

use fairway_controller::grpc::{self, DiscoveryService, Proxies};
use fairway_controller::metrics::Metrics;
use fairway_controller::state::{IndexHandle, NodeZones};
use fairway_controller::status::StatusConfig;
use fairway_controller::store::{DEFAULT_COALESCE, Store};
use fairway_controller::watch::{self, WatchConfig};
use tokio::net::TcpListener;
use tokio::sync::watch as channel;
use tokio::task::JoinSet;

use crate::cluster::TestCluster;
use crate::error::ClusterError;
use crate::kubectl::{Output, kubectl};

/// The committed CRD, as users install it.
pub const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crds/fairway.dev_routes.yaml"
);

/// The shared cluster with the Route CRD applied and Established (once per binary).
/// Panics with the reason if either fails: every caller is a test.
pub fn cluster_with_crd() -> &'static TestCluster {
    static CRD: OnceLock<Result<(), String>> = OnceLock::new();
    let cluster = TestCluster::shared().unwrap_or_else(|e| panic!("test cluster: {e}"));
    let installed = CRD.get_or_init(|| {
        let run = |args: &[&str], what: &str| -> Result<(), String> {
            let out: Output = kubectl(cluster, args, None).map_err(|e| e.to_string())?;
            if out.success {
                Ok(())
            } else {
                Err(format!("{what} failed:\n{}{}", out.stdout, out.stderr))
            }
        };
        run(
            &["apply", "--server-side", "-f", CRD_FILE],
            "kubectl apply the CRD",
        )?;
        let established = [
            "wait",
            "--for=condition=Established",
            "crd/routes.fairway.dev",
            "--timeout=60s",
        ];
        run(&established, "wait for the CRD to be Established")
    });
    if let Err(e) = installed {
        panic!("{e}");
    }
    cluster
}

/// A running in-process controller. Stop it with [`Controller::stop`]; dropping it
/// aborts its tasks.
#[derive(Debug)]
pub struct Controller {
    /// `http://127.0.0.1:PORT` of its Discovery server.
    pub endpoint: String,
    pub index: Arc<IndexHandle>,
    pub store: Arc<Store>,
    stop: channel::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Starts a controller watching `namespace` of `cluster`, its gRPC server on a free
/// loopback port, its status Lease in `namespace`.
pub async fn start(cluster: &TestCluster, namespace: &str) -> Result<Controller, ClusterError> {
    start_replica(cluster, namespace, &format!("test-controller-{namespace}")).await
}

/// Like [`start`], with this Lease holder identity: replicas of one namespace share
/// the Lease and elect one status writer.
pub async fn start_replica(
    cluster: &TestCluster,
    namespace: &str,
    identity: &str,
) -> Result<Controller, ClusterError> {
    let client = cluster.client().await?;
    let status = StatusConfig {
        lease_namespace: namespace.to_owned(),
        identity: identity.to_owned(),
    };
    start_with(client, vec![namespace.to_owned()], status).await
}

/// Starts a controller with `client` (e.g. one holding only a ServiceAccount token),
/// watching `namespaces` (empty: all, as the chart's Deployment does by default), its
/// status Lease as `status` says.
pub async fn start_with(
    client: kube::Client,
    namespaces: Vec<String>,
    status: StatusConfig,
) -> Result<Controller, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(ClusterError::io("bind the controller's gRPC port"))?;
    let addr = listener
        .local_addr()
        .map_err(ClusterError::io("read the controller's gRPC port"))?;

    let index = IndexHandle::new();
    let zones = Arc::new(NodeZones::default());
    let store = Store::new();
    let proxies = Proxies::new(zones.clone());
    let metrics = Arc::new(Metrics::new());
    let (stop, stopping) = channel::channel(false);
    let config = WatchConfig {
        namespaces,
        selector: None,
        status,
    };

    let mut tasks = JoinSet::new();
    tasks.spawn(store.clone().run(index.clone(), DEFAULT_COALESCE));
    let sources = watch::run_sources(client, index.clone(), zones, config, store.subscribe());
    tasks.spawn(async move {
        // A test sees the effect (no stream, no status); the reason goes to its output.
        if let Err(e) = sources.await {
            eprintln!("controller sources failed: {e}");
        }
    });
    let service = DiscoveryService::new(store.clone(), proxies, metrics, stopping.clone());
    let mut until_stopped = stopping;
    let shutdown = async move {
        let _ = until_stopped.wait_for(|stopped| *stopped).await;
    };
    tasks.spawn(async move {
        if let Err(e) = grpc::serve(listener, service, shutdown).await {
            eprintln!("controller gRPC server failed: {e}");
        }
    });
    Ok(Controller {
        endpoint: format!("http://{addr}"),
        index,
        store,
        stop,
        tasks,
    })
}

impl Controller {
    /// Signals shutdown (streams end), then aborts every task and waits for them.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
