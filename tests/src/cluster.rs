//! A real Kubernetes control plane for tests: `etcd` plus `kube-apiserver` on loopback,
//! RBAC on, a service-account signing key, an admin token.
//!
//! Start with [`TestCluster::shared`]: one cluster per test binary, started on first use,
//! so the suite pays the start-up once; give each test its own namespace
//! ([`TestCluster::namespace`]). Share the kubeconfig, never a `kube::Client` (a client
//! belongs to the tokio runtime that made it): [`TestCluster::client`] makes one for the
//! caller's runtime.
//!
//! There is no kubelet and no controller-manager: tests create EndpointSlices
//! themselves, namespaces never finish deleting (use fresh names), owner references are
//! never garbage-collected.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::error::ClusterError;
use crate::gobuild::{KubeBinaries, ensure_binaries};
use crate::pki;
use crate::process::Managed;

/// The `iss` of the test cluster's ServiceAccount tokens.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// How long etcd plus a cold kube-apiserver may take to answer `/readyz` on 2 cores.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(200);
/// Grace before SIGKILL when stopping for a restart.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running test cluster. See the module docs.
#[derive(Debug)]
pub struct TestCluster {
    /// Admin kubeconfig (a static bearer token in group `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// Where the logs, keys and etcd data live.
    pub dir: PathBuf,
    control: Mutex<mpsc::Sender<Control>>,
}

enum Control {
    /// Stop etcd and the apiserver (data kept), start them again, reply once ready.
    Restart(mpsc::Sender<Result<(), String>>),
}

static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();

impl TestCluster {
    /// The cluster of this test binary, started (and built, the first time) on first use.
    /// Blocks until `/readyz` answers.
    pub fn shared() -> Result<&'static TestCluster, ClusterError> {
        SHARED
            .get_or_init(|| start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ClusterError::Earlier(e.clone()))
    }

    /// The CA that signed the apiserver's serving certificate (for kubeconfigs of other
    /// users, e.g. a ServiceAccount token).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(pki::CA_CERT)
    }

    /// The key the apiserver signs ServiceAccount tokens with (PKCS#8 PEM, P-256), for
    /// tests that need a token the TokenRequest API will not mint (an expired one).
    pub fn service_account_signing_key(&self) -> PathBuf {
        self.dir.join(pki::SA_KEY)
    }

    /// A `kube::Client` for the caller's tokio runtime.
    pub async fn client(&self) -> Result<Client, ClusterError> {
        client_from(&self.kubeconfig).await
    }

    /// Creates a fresh namespace `PREFIX-xxxxxx` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> Result<String, ClusterError> {
        let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let api: Api<Namespace> = Api::all(self.client().await?);
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(|e| ClusterError::Client(format!("create namespace {name}: {e}")))?;
        Ok(name)
    }

    /// Stops etcd and the apiserver and starts them again on the same ports and data;
    /// returns once `/readyz` answers again. For tests of apiserver outages.
    pub fn restart(&self) -> Result<(), ClusterError> {
        let (tx, rx) = mpsc::channel();
        self.control
            .lock()
            .map_err(|_| ClusterError::Earlier("cluster keeper lock poisoned".into()))?
            .send(Control::Restart(tx))
            .map_err(|_| ClusterError::Earlier("cluster keeper thread is gone".into()))?;
        rx.recv()
            .map_err(|_| ClusterError::Earlier("cluster keeper thread is gone".into()))?
            .map_err(ClusterError::Earlier)
    }
}

/// Everything needed to (re)start the two processes.
struct Plan {
    bins: KubeBinaries,
    dir: PathBuf,
    etcd_client_port: u16,
    etcd_peer_port: u16,
    apiserver_port: u16,
    kubeconfig: PathBuf,
}

fn start() -> Result<TestCluster, ClusterError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bins = ensure_binaries()?;
    let dir = tempfile::Builder::new()
        .prefix("fairway-cluster-")
        .tempdir()
        .map_err(ClusterError::io("create the cluster directory"))?
        .keep();
    let token = pki::write_all(&dir)?;
    let plan = Plan {
        bins,
        etcd_client_port: free_port()?,
        etcd_peer_port: free_port()?,
        apiserver_port: free_port()?,
        kubeconfig: dir.join("kubeconfig"),
        dir: dir.clone(),
    };
    let server = format!("https://127.0.0.1:{}", plan.apiserver_port);
    std::fs::write(
        &plan.kubeconfig,
        kubeconfig(&server, &dir.join(pki::CA_CERT), &token),
    )
    .map_err(ClusterError::io("write the kubeconfig"))?;
    let kubeconfig_path = plan.kubeconfig.clone();

    let (control_tx, control_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fairway-cluster-keeper".into())
        .spawn(move || keeper(plan, ready_tx, control_rx))
        .map_err(ClusterError::io("spawn the cluster keeper thread"))?;
    ready_rx
        .recv()
        .map_err(|_| ClusterError::Earlier("cluster keeper thread died".into()))??;
    eprintln!(
        "fairway-tests: kube-apiserver ready at {server} (logs in {})",
        dir.display()
    );
    Ok(TestCluster {
        kubeconfig: kubeconfig_path,
        server,
        dir,
        control: Mutex::new(control_tx),
    })
}

/// Owns the processes for the life of the test binary. Children die with this thread
/// (parent-death signal), and this thread lives until the process exits.
fn keeper(
    plan: Plan,
    ready: mpsc::Sender<Result<(), ClusterError>>,
    control: mpsc::Receiver<Control>,
) {
    let mut procs = match boot(&plan) {
        Ok(procs) => {
            let _ = ready.send(Ok(()));
            procs
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // The sender lives in a `static`, so this loop ends only with the process.
    while let Ok(Control::Restart(reply)) = control.recv() {
        for p in procs.iter_mut().rev() {
            p.stop(STOP_GRACE);
        }
        let result = boot(&plan).map(|new| procs = new);
        let _ = reply.send(result.map_err(|e| e.to_string()));
    }
}

/// Starts etcd, then the apiserver, and waits for `/readyz`.
fn boot(plan: &Plan) -> Result<Vec<Managed>, ClusterError> {
    let etcd_url = format!("http://127.0.0.1:{}", plan.etcd_client_port);
    let peer_url = format!("http://127.0.0.1:{}", plan.etcd_peer_port);
    let etcd_args: Vec<String> = [
        "--name=fairway-test",
        &format!("--data-dir={}", plan.dir.join("etcd").display()),
        &format!("--listen-client-urls={etcd_url}"),
        &format!("--advertise-client-urls={etcd_url}"),
        &format!("--listen-peer-urls={peer_url}"),
        &format!("--initial-advertise-peer-urls={peer_url}"),
        &format!("--initial-cluster=fairway-test={peer_url}"),
        // Test data is throwaway: skip fsync-heavy durability.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut etcd = Managed::spawn(
        "etcd",
        &plan.bins.etcd,
        &etcd_args,
        plan.dir.join("etcd.log"),
    )?;

    let file = |name: &str| plan.dir.join(name).display().to_string();
    let api_args: Vec<String> = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", plan.apiserver_port),
        format!("--tls-cert-file={}", file(pki::SERVING_CERT)),
        format!("--tls-private-key-file={}", file(pki::SERVING_KEY)),
        format!("--token-auth-file={}", file(pki::TOKENS)),
        format!("--service-account-key-file={}", file(pki::SA_PUB)),
        format!("--service-account-signing-key-file={}", file(pki::SA_KEY)),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        "--api-audiences=https://kubernetes.default.svc.cluster.local,fairway".into(),
        "--authorization-mode=RBAC".into(),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        format!("--cert-dir={}", file("certs")),
        "--v=1".into(),
    ];
    let mut apiserver = match Managed::spawn(
        "kube-apiserver",
        &plan.bins.kube_apiserver,
        &api_args,
        plan.dir.join("kube-apiserver.log"),
    ) {
        Ok(p) => p,
        Err(e) => {
            etcd.stop(STOP_GRACE);
            return Err(e);
        }
    };

    if let Err(e) = wait_ready(&plan.kubeconfig, &mut etcd, &mut apiserver) {
        apiserver.stop(STOP_GRACE);
        etcd.stop(STOP_GRACE);
        return Err(e);
    }
    Ok(vec![etcd, apiserver])
}

fn wait_ready(
    kubeconfig: &Path,
    etcd: &mut Managed,
    apiserver: &mut Managed,
) -> Result<(), ClusterError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClusterError::io("build a runtime for the readiness probe"))?;
    runtime.block_on(async {
        let client = client_from(kubeconfig).await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            etcd.check_running()?;
            apiserver.check_running()?;
            let probe = http::Request::get("/readyz").body(Vec::new());
            if let Ok(request) = probe
                && let Ok(body) = client.request_text(request).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady {
                    what: "kube-apiserver",
                    seconds: READY_TIMEOUT.as_secs(),
                    log: apiserver.log.display().to_string(),
                    tail: apiserver.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

async fn client_from(kubeconfig: &Path) -> Result<Client, ClusterError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| ClusterError::Client(format!("read {}: {e}", kubeconfig.display())))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))
}

fn kubeconfig(server: &str, ca_file: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fairway-test\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: fairway-admin\n  user:\n    token: {token}\ncontexts:\n- name: fairway-test\n  context:\n    cluster: fairway-test\n    user: fairway-admin\ncurrent-context: fairway-test\n",
        ca_file.display()
    )
}

/// A port the kernel just handed out on 127.0.0.1 (released again at once; the short
/// race with another process is acceptable in tests).
pub fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(ClusterError::io("find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(ClusterError::io("find a free port"))?
        .port())
}
