//! A fairway-controller in-process against the test cluster, wired like
//! `fairway_controller::process` (index, store publisher, Kubernetes sources with the
//! status writer, gRPC Discovery server) but with a test's own settings: the client
//! comes from the cluster's kubeconfig for the caller's runtime, it watches one
//! namespace, and its status Lease lives in that namespace, so parallel tests never
//! compete for one Lease.
//!
//! Also installs the Route CRD once per test binary ([`cluster_with_crd`]).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use fairway_controller::auth::{Authenticator, KubeReviewer, PodAuthenticator};
use fairway_controller::drain::DrainService;
use fairway_controller::drain::peers::PeerConfig;
use fairway_controller::grpc::{self, DiscoveryService, Proxies};
use fairway_controller::metrics::Metrics;
use fairway_controller::state::{IndexHandle, NodeZones};
use fairway_controller::status::StatusConfig;
use fairway_controller::store::{DEFAULT_COALESCE, Store};
use fairway_controller::tls::{self, TlsConfig};
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
    /// `http://127.0.0.1:PORT` of its Discovery server (`https://` with TLS).
    pub endpoint: String,
    /// The bound gRPC address.
    pub addr: SocketAddr,
    pub index: Arc<IndexHandle>,
    pub store: Arc<Store>,
    pub proxies: Arc<Proxies>,
    pub metrics: Arc<Metrics>,
    stop: channel::Sender<bool>,
    /// The watchers and the status writer: on stop they release the status Lease.
    sources: tokio::task::JoinHandle<()>,
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
        owner: None,
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
    start_secured(client, namespaces, status, Security::default()).await
}

/// How a [`start_secured`] controller protects its Discovery stream.
#[derive(Debug)]
pub struct Security {
    /// Who may subscribe (`Authenticator::disabled()`: everyone, like `--no-auth`).
    pub auth: Arc<Authenticator>,
    /// Serve TLS from these files (reloaded like the real controller's), or plaintext.
    pub tls: Option<TlsConfig>,
    /// Where to listen: port 0 for any, or a fixed address to restart on.
    pub addr: SocketAddr,
    /// Serve the drain handshake, reviewing pods' tokens for this audience. Its
    /// start-up grace is zero: a test connects its proxies before any pod asks.
    pub drain_audience: Option<String>,
    /// The replicas the handshake asks (`host:port`, plaintext); empty: this one alone.
    pub drain_peers: Vec<String>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            auth: Arc::new(Authenticator::disabled()),
            tls: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            drain_audience: None,
            drain_peers: Vec::new(),
        }
    }
}

/// Like [`start_with`], with authentication and TLS as `security` says.
pub async fn start_secured(
    client: kube::Client,
    namespaces: Vec<String>,
    status: StatusConfig,
    security: Security,
) -> Result<Controller, ClusterError> {
    fairway_controller::process::install_crypto_provider();
    let tls = (security.tls.as_ref().map(tls::server_config).transpose())
        .map_err(|e| ClusterError::Client(format!("the controller's TLS files: {e}")))?;
    let listener = TcpListener::bind(security.addr)
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
        pod_events: None,
    };

    let mut tasks = JoinSet::new();
    tasks.spawn(store.clone().run(index.clone(), DEFAULT_COALESCE));
    let peers = PeerConfig {
        names: security.drain_peers,
        ca: None,
    };
    let drain = security.drain_audience.map(|audience| {
        let reviewer = Arc::new(KubeReviewer::new(client.clone()));
        let auth = Arc::new(PodAuthenticator::new(audience, reviewer));
        DrainService::new(store.clone(), proxies.clone(), Some(auth), stopping.clone())
            .with_grace(std::time::Duration::ZERO)
            .with_peers(peers)
    });
    let sources = watch::run_sources(
        client,
        index.clone(),
        zones,
        config,
        store.subscribe(),
        stopping.clone(),
    );
    let sources = tokio::spawn(async move {
        // A test sees the effect (no stream, no status); the reason goes to its output.
        if let Err(e) = sources.await {
            eprintln!("controller sources failed: {e}");
        }
    });
    let service = DiscoveryService::new(
        store.clone(),
        proxies.clone(),
        metrics.clone(),
        stopping.clone(),
    )
    .with_auth(security.auth)
    .requiring_client_certs((security.tls.as_ref()).is_some_and(|t| t.client_ca_file.is_some()));
    let service = match drain {
        Some(drain) => service.with_drain(drain),
        None => service,
    };
    let mut until_stopped = stopping;
    let shutdown = async move {
        let _ = until_stopped.wait_for(|stopped| *stopped).await;
    };
    let scheme = match tls {
        None => {
            tasks.spawn(async move {
                if let Err(e) = grpc::serve(listener, service, shutdown).await {
                    eprintln!("controller gRPC server failed: {e}");
                }
            });
            "http"
        }
        Some((config, reloader)) => {
            tasks.spawn(reloader.watch(tls::RELOAD_INTERVAL));
            tasks.spawn(async move {
                if let Err(e) = grpc::serve_tls(listener, config, service, shutdown).await {
                    eprintln!("controller gRPC server failed: {e}");
                }
            });
            "https"
        }
    };
    Ok(Controller {
        endpoint: format!("{scheme}://{addr}"),
        addr,
        index,
        store,
        proxies,
        metrics,
        stop,
        sources,
        tasks,
    })
}

impl Controller {
    /// Its `/metrics` text, as the admin server would serve it.
    pub fn metrics_text(&self) -> String {
        (self.metrics.encode(&self.proxies, &self.store.latest()))
            .unwrap_or_else(|e| panic!("encode metrics: {e}"))
    }

    /// Signals shutdown, as SIGTERM does: streams end, and the sources stop once the
    /// status Lease is released (bounded by the controller's shutdown grace). Then
    /// aborts every other task and waits for them.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        let grace = fairway_controller::process::SHUTDOWN_GRACE;
        if tokio::time::timeout(grace, &mut self.sources)
            .await
            .is_err()
        {
            eprintln!("controller sources did not stop within {grace:?}; aborting them");
            self.sources.abort();
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for Controller {
    /// A `JoinSet` aborts its tasks when dropped; a lone `JoinHandle` would detach.
    fn drop(&mut self) {
        self.sources.abort();
    }
}
