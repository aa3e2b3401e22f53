//! The whole controller process: [`start`] binds and wires the parts, [`Running::serve`]
//! owns their lifetimes; [`run`] is both.
//!
//! Reading order of a start: one rustls `CryptoProvider` (ring); the configuration
//! checked and the TLS files loaded (a bad one fails before anything runs); both
//! listeners bound; the Kubernetes client, unless `--static-dir`, and with it the
//! TokenReview [`Authenticator`]; then the tasks: the source (static directory or watchers) feeds the
//! [`IndexHandle`], the [`Store`] publisher turns its changes into versions, the gRPC
//! server streams them, admin reports on all of it.
//!
//! Shutdown: every Discovery stream ends cleanly (status OK), the gRPC and admin servers
//! close their connections within [`SHUTDOWN_GRACE`], then the source and publisher
//! stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::admin::{self, AdminState};
use crate::auth::{AuthConfig, Authenticator, KubePods, KubeReviewer, PodAuthenticator};
use crate::config::{Config, ConfigError, Source, WebhookConfig};
use crate::drain::DrainService;
use crate::drain::peers::PeerConfig;
use crate::grpc::{self, DiscoveryService, Proxies};
use crate::index::Index;
use crate::inject::events::PodEvents;
use crate::inject::template::CAPTURE_CONTAINER;
use crate::inject::{self, Template};
use crate::metrics::Metrics;
use crate::state::{IndexHandle, NodeZones};
use crate::static_dir::{self, StaticDirError};
use crate::store::Store;
use crate::tls::{self, Reloader, TlsError};
use crate::watch::{WatchConfig, WatchError};

/// How long the servers get to close their connections after shutdown begins. Streams
/// end at once; this only covers a proxy too slow to read its last messages.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The step that failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("loading the Discovery server's TLS files: {0}")]
    Tls(#[from] TlsError),
    #[error("reading the drain peers' CA {path}: {source}")]
    DrainPeerCa {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the gRPC address {addr}: {source}")]
    BindGrpc {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the admin address {addr}: {source}")]
    BindAdmin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the webhook's TLS files: {0}")]
    WebhookTls(#[source] TlsError),
    #[error(transparent)]
    InjectTemplate(#[from] crate::inject::template::TemplateError),
    #[error("a Kubernetes client to publish the CA with (--publish-ca-file): {0}")]
    PublishCaClient(#[source] kube::Error),
    #[error("binding the webhook address {addr}: {source}")]
    BindWebhook {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to Kubernetes (kubeconfig or in-cluster): {0}")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    StaticDir(#[from] StaticDirError),
    #[error("watching Kubernetes: {0}")]
    Watch(#[from] WatchError),
    #[error("the gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
    #[error("a controller task panicked: {0}")]
    Task(#[from] JoinError),
    #[error("the {0} stopped without being asked to")]
    Stopped(&'static str),
}

pub use fairway_process::install_crypto_provider;

/// Completes on SIGTERM (Kubernetes' stop signal) or Ctrl-C.
pub async fn shutdown_signal() {
    fairway_process::shutdown_signal("controller").await;
}

/// The source of Kubernetes objects, ready to run.
enum Feed {
    StaticDir(std::path::PathBuf),
    // Boxed: the status config (with its Lease owner) dwarfs the other variant.
    Kubernetes(kube::Client, Box<WatchConfig>),
}

/// The injection webhook, bound and loaded.
struct Webhook {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    reloader: Reloader,
    injector: Arc<inject::serve::Injector>,
}

/// Loads the webhook's template and certificate and binds its port; with
/// `--publish-ca-file`, a client to publish the CA with.
async fn webhook(config: &WebhookConfig) -> Result<Webhook, RunError> {
    let template = Template::read(&config.template)?;
    let publisher = match &config.publish_ca_file {
        Some(file) => {
            let client = kube::Client::try_default()
                .await
                .map_err(RunError::PublishCaClient)?;
            Some(inject::publish::CaPublisher::new(client, file.clone()))
        }
        None => None,
    };
    let injector = Arc::new(inject::serve::Injector {
        template,
        publisher,
    });
    let (tls, reloader) = tls::server_config(&config.tls).map_err(RunError::WebhookTls)?;
    let listener =
        TcpListener::bind(config.addr)
            .await
            .map_err(|source| RunError::BindWebhook {
                addr: config.addr,
                source,
            })?;
    tracing::info!(addr = %config.addr, "injection webhook listening");
    Ok(Webhook {
        listener,
        tls: inject::serve::tls_config(&tls),
        reloader,
        injector,
    })
}

/// What the pod watch needs to know about the injector, with `--pod-events`.
fn pod_events(config: Option<&WebhookConfig>, webhook: Option<&Webhook>) -> Option<PodEvents> {
    let (config, webhook) = (config.filter(|c| c.pod_events)?, webhook?);
    let template = &webhook.injector.template;
    Some(PodEvents {
        excluded_namespaces: config.excluded_namespaces.iter().cloned().collect(),
        drain: template.drain.is_some(),
        capture: (template.capture.as_ref())
            .map_or_else(|| CAPTURE_CONTAINER.to_owned(), |c| c.name.clone()),
        containers: std::iter::once(template.proxy.name.clone())
            .chain(template.drain.as_ref().map(|d| d.copy.name.clone()))
            .collect(),
    })
}

/// A started controller: listeners bound, shared state built, nothing running yet.
pub struct Running {
    config: Config,
    grpc: TcpListener,
    admin: TcpListener,
    feed: Feed,
    auth: Arc<Authenticator>,
    /// Names the pods asking about their drain; `None` without an apiserver.
    drain_auth: Option<Arc<PodAuthenticator>>,
    /// The replicas the drain handshake asks.
    drain_peers: PeerConfig,
    tls: Option<(Arc<rustls::ServerConfig>, Reloader)>,
    webhook: Option<Webhook>,
    pub index: Arc<IndexHandle>,
    pub zones: Arc<NodeZones>,
    pub store: Arc<Store>,
    pub proxies: Arc<Proxies>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("config", &self.config)
            .field("grpc", &self.grpc.local_addr().ok())
            .field("admin", &self.admin.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Binds the listeners and builds the shared state.
pub async fn start(config: Config) -> Result<Running, RunError> {
    start_with_client(config, None).await
}

/// [`start`], with this Kubernetes client instead of kubeconfig / in-cluster inference
/// (`None`: infer). For embedders and tests that hold a client already.
pub async fn start_with_client(
    config: Config,
    client: Option<kube::Client>,
) -> Result<Running, RunError> {
    install_crypto_provider();
    config.check()?;
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let peer_ca = (config.drain_peer_ca_file.as_ref())
        .map(|path| {
            std::fs::read(path).map_err(|source| RunError::DrainPeerCa {
                path: path.clone(),
                source,
            })
        })
        .transpose()?;
    let drain_peers = PeerConfig {
        names: config.drain_peers.clone(),
        ca: peer_ca.filter(|_| config.tls.is_some()),
    };
    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|source| RunError::BindGrpc {
            addr: config.grpc_addr,
            source,
        })?;
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .map_err(|source| RunError::BindAdmin {
            addr: config.admin_addr,
            source,
        })?;
    let webhook = match &config.webhook {
        Some(settings) => Some(webhook(settings).await?),
        None => None,
    };
    let feed = match &config.source {
        Source::StaticDir(dir) => Feed::StaticDir(dir.clone()),
        Source::Kubernetes {
            namespaces,
            selector,
        } => {
            let client = match client {
                Some(client) => client,
                None => kube::Client::try_default().await.map_err(RunError::Kube)?,
            };
            let watch = WatchConfig {
                namespaces: namespaces.clone(),
                selector: selector.clone(),
                pod_events: pod_events(config.webhook.as_ref(), webhook.as_ref()),
                ..WatchConfig::default()
            };
            Feed::Kubernetes(client, Box::new(watch))
        }
    };
    let auth = match (&config.auth, &feed) {
        (AuthConfig::TokenReview(policy), Feed::Kubernetes(client, _)) => {
            let reviewer = Arc::new(KubeReviewer::new(client.clone()));
            let auth = Authenticator::token_review(policy.clone(), reviewer);
            Arc::new(auth.with_pods(Arc::new(KubePods::new(client.clone()))))
        }
        (AuthConfig::TokenReview(_), Feed::StaticDir(_)) => {
            return Err(ConfigError::TokenReviewWithoutApi.into());
        }
        (AuthConfig::Disabled, _) => Arc::new(Authenticator::disabled()),
    };
    // Any pod may ask about its own drain, whoever may subscribe to Discovery.
    let drain_auth = match &feed {
        Feed::Kubernetes(client, _) => Some(Arc::new(PodAuthenticator::new(
            config.token_audience.clone(),
            Arc::new(KubeReviewer::new(client.clone())),
        ))),
        Feed::StaticDir(_) => None,
    };
    let zones = Arc::new(NodeZones::default());
    let index = Index::with_cluster_domain(&config.cluster_domain)
        .with_implicit_services(config.implicit_services);
    Ok(Running {
        config,
        grpc,
        admin,
        feed,
        auth,
        drain_auth,
        drain_peers,
        tls,
        webhook,
        index: Arc::new(IndexHandle::from_index(index)),
        proxies: Proxies::new(zones.clone()),
        zones,
        store: Store::new(),
        metrics: Arc::new(Metrics::new()),
    })
}

/// Binds, wires and runs the controller until `shutdown` resolves (or a part fails).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    start(config).await?.serve(shutdown).await
}

/// Maps a finished task to the run's result: any stop that was not asked for is an
/// error.
fn finished<E: Into<RunError>>(
    name: &'static str,
    result: Result<Result<(), E>, JoinError>,
) -> RunError {
    match result {
        Ok(Ok(())) => RunError::Stopped(name),
        Ok(Err(e)) => e.into(),
        Err(e) => RunError::Task(e),
    }
}

impl Running {
    /// The bound gRPC address (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.grpc_addr)
    }

    /// The bound admin address (useful with port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin_addr)
    }

    /// The bound webhook address, when it serves one (useful with port 0).
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook
            .as_ref()
            .and_then(|w| w.listener.local_addr().ok())
    }

    /// Runs every part until `shutdown` resolves, then stops them in order.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let Running {
            config,
            grpc,
            admin,
            feed,
            auth,
            drain_auth,
            drain_peers,
            tls,
            webhook,
            index,
            zones,
            store,
            proxies,
            metrics,
        } = self;
        if !auth.is_enabled() {
            tracing::warn!(
                "--no-auth: any client that reaches the gRPC port can read every route and pod address"
            );
        }
        if tls.is_none() {
            tracing::warn!("no --tls-cert-file: the Discovery stream is plaintext");
        }
        tracing::info!(
            grpc = %grpc.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            admin = %admin.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            source = ?config.source,
            coalesce = ?config.coalesce,
            auth = auth.is_enabled(),
            tls = tls.is_some(),
            epoch = store.epoch(),
            "fairway-controller starting"
        );
        let (stop, stopping) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let publisher = tokio::spawn(store.clone().run(index.clone(), config.coalesce));
        // Only the Kubernetes source ends on `stop` (after releasing the status Lease).
        let source_stops = matches!(feed, Feed::Kubernetes(..));
        let mut source: JoinHandle<Result<(), RunError>> = match feed {
            Feed::StaticDir(dir) => {
                let index = index.clone();
                tokio::spawn(async move {
                    static_dir::run(dir, index, static_dir::Follow::default()).await?;
                    Ok(())
                })
            }
            Feed::Kubernetes(client, watch) => {
                let (index, zones, published) = (index.clone(), zones.clone(), store.subscribe());
                let stopping = stopping.clone();
                tokio::spawn(async move {
                    crate::watch::run_sources(client, index, zones, *watch, published, stopping)
                        .await?;
                    Ok(())
                })
            }
        };
        let drain = DrainService::new(store.clone(), proxies.clone(), drain_auth, stopping.clone())
            .with_peers(drain_peers);
        let service = DiscoveryService::new(
            store.clone(),
            proxies.clone(),
            metrics.clone(),
            stopping.clone(),
        )
        .with_auth(auth)
        .with_drain(drain);
        let (mut grpc, reload) = match tls {
            Some((server_config, reloader)) => (
                tokio::spawn(grpc::serve_tls(
                    grpc,
                    server_config,
                    service,
                    stopped(stopping.clone()),
                )),
                Some(tokio::spawn(reloader.watch(tls::RELOAD_INTERVAL))),
            ),
            None => (
                tokio::spawn(grpc::serve(grpc, service, stopped(stopping.clone()))),
                None,
            ),
        };
        let admin_state = Arc::new(AdminState {
            index,
            store,
            proxies,
            metrics,
            event_streams: Default::default(),
        });
        let mut admin = tokio::spawn(admin::serve(admin, admin_state, stopped(stopping.clone())));
        // The webhook has no state of its own to drain: aborted with the rest below.
        let webhook = webhook.map(|w| {
            let shutdown = stopped(stopping.clone());
            let serve = inject::serve::serve(w.listener, w.tls, w.injector, shutdown);
            (
                tokio::spawn(serve),
                tokio::spawn(w.reloader.watch(tls::RELOAD_INTERVAL)),
            )
        });

        let failure = tokio::select! {
            () = shutdown => None,
            result = &mut source => Some(finished("source", result)),
            result = &mut grpc => Some(finished("gRPC server", result.map(|r| r.map_err(RunError::Grpc)))),
            result = &mut admin => Some(finished::<RunError>("admin server", result.map(Ok))),
        };
        if let Some(e) = &failure {
            tracing::error!(error = %e, "controller part failed; stopping");
        }
        stop.send_replace(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            if !grpc.is_finished() {
                let _ = (&mut grpc).await;
            }
            if !admin.is_finished() {
                let _ = (&mut admin).await;
            }
            // The Kubernetes source ends once it released the status Lease, so a
            // standby writes status without waiting for the Lease to expire.
            if source_stops && failure.is_none() && !source.is_finished() {
                let _ = (&mut source).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "servers still had connections after the grace; closing them");
        }
        for task in [
            grpc.abort_handle(),
            admin.abort_handle(),
            source.abort_handle(),
            publisher.abort_handle(),
        ] {
            task.abort();
        }
        if let Some(reload) = reload {
            reload.abort();
        }
        if let Some((serve, reload)) = webhook {
            serve.abort();
            reload.abort();
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
