//! What the drain tests share: a namespace with a ServiceAccount and Pod objects (no
//! kubelet runs them; the apiserver only needs them to bind tokens to), tokens bound to
//! those pods by the TokenRequest API, a controller serving the handshake, test proxies
//! that ack when told, and the real `fairway wait-drained` binary as a process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fairway_controller::status::StatusConfig;
use fairway_tests::controller::{self, Controller, Security};
use fairway_tests::discovery::TestProxy;
use fairway_tests::objects::{State, endpoint, route, service, slice};
use k8s_openapi::api::authentication::v1::BoundObjectReference;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, PodSpec, ServiceAccount};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// A synced controller answers, and a proxy gets its table, within this.
pub const WAIT: Duration = Duration::from_secs(60);
/// The audience the controller reviews hooks' tokens for.
pub const AUDIENCE: &str = "fairway";
/// The pods' ServiceAccount.
pub const SA: &str = "web";
/// The Service (and Route host `orders.shop`).
pub const SERVICE: &str = "orders";
const PORT: i32 = 8080;

/// A test's namespace on the shared cluster, and a token directory.
pub struct Setup {
    pub ns: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub async fn new(prefix: &str) -> Setup {
        let cluster = controller::cluster_with_crd();
        let ns = (cluster.namespace(prefix).await).unwrap_or_else(|e| panic!("{e}"));
        let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
        let setup = Setup {
            ns,
            client,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let sa = ServiceAccount {
            metadata: meta(SA),
            ..ServiceAccount::default()
        };
        setup.create(&sa).await;
        setup
    }

    pub async fn create<K>(&self, object: &K) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns);
        (api.create(&PostParams::default(), object).await)
            .unwrap_or_else(|e| panic!("create {object:?}: {e}"))
    }

    /// Creates Pod `name` (never scheduled: there is no scheduler) and returns a token
    /// bound to it for `audience`, as the kubelet mounts a projected token.
    pub async fn pod_token(&self, name: &str, audience: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let pod = match pods.get_opt(name).await {
            Ok(Some(pod)) => pod,
            _ => {
                self.create(&Pod {
                    metadata: meta(name),
                    spec: Some(PodSpec {
                        service_account_name: Some(SA.to_owned()),
                        containers: vec![Container {
                            name: "app".to_owned(),
                            image: Some("fairway.local/backend:test".to_owned()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                    ..Pod::default()
                })
                .await
            }
        };
        let uid = pod.metadata.uid.expect("a created pod has a uid");
        self.token(
            audience,
            Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(name.to_owned()),
                uid: Some(uid),
            }),
        )
        .await
    }

    /// A token of the pods' ServiceAccount for `audience`, bound to `bound` if given.
    pub async fn token(&self, audience: &str, bound: Option<BoundObjectReference>) -> String {
        fairway_tests::tokens::token(&self.client, &self.ns, SA, audience, bound).await
    }

    /// Writes `token` to a file of its own; returns the path.
    pub fn token_file(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, token).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A controller watching this namespace that serves the handshake.
    pub async fn controller(&self) -> Controller {
        self.replica("only", Security::default().addr, Vec::new())
            .await
    }

    /// A controller replica named `name` on `addr` that asks `peers` (itself included).
    pub async fn replica(&self, name: &str, addr: SocketAddr, peers: Vec<String>) -> Controller {
        let security = Security {
            addr,
            drain_peers: peers,
            ..Security::default()
        };
        self.secured(name, security).await
    }

    /// A controller named `name` serving the handshake, with `security` otherwise.
    pub async fn secured(&self, name: &str, security: Security) -> Controller {
        let status = StatusConfig {
            lease_namespace: self.ns.clone(),
            identity: format!("drain-test-{name}-{}", self.ns),
            owner: None,
        };
        let security = Security {
            drain_audience: Some(AUDIENCE.to_owned()),
            ..security
        };
        (controller::start_secured(self.client.clone(), vec![self.ns.clone()], status, security)
            .await)
            .unwrap_or_else(|e| panic!("start the controller: {e}"))
    }

    /// Service `orders` with a Route, and its slice listing `pods` as `(pod, state)`,
    /// each at its own documentation address (never dialled).
    pub async fn orders(&self, pods: &[(&str, State)]) {
        self.create(&service(&self.ns, SERVICE, "http", PORT)).await;
        self.create(&route(&self.ns, SERVICE, &["orders.shop"], SERVICE, PORT))
            .await;
        self.create(&self.slice(pods)).await;
    }

    /// Replaces the slice's endpoints, as the EndpointSlice controller would.
    pub async fn set_pods(&self, pods: &[(&str, State)]) {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.ns);
        let patch = Patch::Apply(self.slice(pods));
        let params = PatchParams::apply("drain-test").force();
        (api.patch(&format!("{SERVICE}-a"), &params, &patch).await)
            .unwrap_or_else(|e| panic!("update the slice: {e}"));
    }

    fn slice(&self, pods: &[(&str, State)]) -> EndpointSlice {
        let endpoints: Vec<Endpoint> = (pods.iter().enumerate())
            .map(|(i, (pod, state))| Endpoint {
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".to_owned()),
                    namespace: Some(self.ns.clone()),
                    name: Some((*pod).to_owned()),
                    ..ObjectReference::default()
                }),
                ..endpoint(&format!("192.0.2.{}", i + 10), *state)
            })
            .collect();
        slice(
            &self.ns,
            &format!("{SERVICE}-a"),
            SERVICE,
            "http",
            PORT,
            endpoints,
        )
    }
}

/// `ObjectMeta` with a name.
fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// A test proxy connected to `controller` that has applied its latest version.
pub async fn proxy(controller: &Controller, id: &str, pods: usize) -> TestProxy {
    let mut proxy = (TestProxy::connect(&controller.endpoint, id, None, WAIT).await)
        .unwrap_or_else(|e| panic!("proxy {id}: {e}"));
    (proxy.until(WAIT, "the orders slice", |t| {
        t.endpoint_sets
            .values()
            .map(|s| s.endpoints.len())
            .sum::<usize>()
            == pods
    }))
    .await
    .unwrap_or_else(|e| panic!("proxy {id}: {e}"));
    proxy
}

/// `fairway wait-drained` against `controller`, started (not awaited).
pub fn wait_drained(controller: &str, token: &Path, timeout: &str) -> tokio::process::Child {
    let binary = fairway_tests::bins::binary("fairway");
    tokio::process::Command::new(binary)
        .args([
            "wait-drained",
            "--controller",
            controller,
            "--controller-plaintext",
        ])
        .arg("--controller-token-file")
        .arg(token)
        .args(["--timeout", timeout, "--fallback-sleep", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start fairway wait-drained: {e}"))
}

/// The hook's exit status and output, once it ends (within [`WAIT`]).
pub async fn finished(child: tokio::process::Child) -> (bool, String, String) {
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("fairway wait-drained still running after {WAIT:?}"))
        .unwrap_or_else(|e| panic!("wait for fairway wait-drained: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}
