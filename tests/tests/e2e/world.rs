//! One scenario's world: a fresh namespace in the shared cluster, the controller and two
//! proxies as real processes, stand-in pods on `10.244.S.N:8080`, and the bounded waits
//! on observable facts (the controller's per-proxy applied versions, the proxies' own
//! tables, kubectl output, the load's samples) that the scenarios share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairway::demo::load::{Load, LoadConfig, Sample};
use fairway::demo::pods::{POD_HEADER, Pod};
use fairway_tests::TestCluster;
use fairway_tests::controller::cluster_with_crd;
use fairway_tests::eventually;
use fairway_tests::kubectl::{Output, kubectl};
use fairway_tests::process::Managed;
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use fairway_controller::crd::Route;

/// A controller or proxy process start (binary already built) and first table.
pub const START: Duration = Duration::from_secs(60);
/// A change in the apiserver reaching both proxies (normally well under a second).
pub const CONVERGE: Duration = Duration::from_secs(30);
/// Enough samples from a running load (a few hundred requests on 2 cores).
pub const TRAFFIC: Duration = Duration::from_secs(60);
/// Port every pod listens on.
pub const POD_PORT: u16 = 8080;
/// Between probes of a fast-changing fact.
const POLL: Duration = Duration::from_millis(10);

/// `target/debug` (or whichever profile built this test binary).
fn bin_dir() -> PathBuf {
    // The test binary is target/PROFILE/deps/e2e-HASH.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(PathBuf::from))
        .unwrap_or_else(|| fairway_tests::gobuild::target_dir().join("debug"))
}

pub fn controller_bin() -> PathBuf {
    bin_dir().join("fairway-controller")
}

pub fn proxy_bin() -> PathBuf {
    bin_dir().join("fairway-proxy")
}

// ---- processes -------------------------------------------------------------------

type Job = Box<dyn FnOnce() + Send>;
static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

/// Starts the thread every child is spawned from: the parent-death signal follows the
/// spawning thread, so it must live as long as the process.
pub fn init_spawner() {
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
                // Never reached while the process runs (the sender is in a static).
                loop {
                    std::thread::park();
                }
            })
            .unwrap_or_else(|e| panic!("spawn the spawner thread: {e}"));
        Mutex::new(tx)
    });
}

/// A child process killed (SIGKILL to its group) when dropped.
#[derive(Debug)]
pub struct Proc {
    managed: Managed,
}

impl Proc {
    pub fn spawn(
        what: &'static str,
        program: PathBuf,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> Proc {
        init_spawner();
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(Managed::spawn_with_env(what, &program, &args, &envs, log));
        });
        SPAWNER
            .get()
            .and_then(|s| s.lock().ok())
            .and_then(|s| s.send(job).ok())
            .unwrap_or_else(|| panic!("the spawner thread is gone"));
        let managed = rx
            .recv()
            .unwrap_or_else(|_| panic!("the spawner thread is gone"))
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Proc { managed }
    }

    /// Panics with the log tail if the process has ended.
    pub fn check(&mut self) {
        if let Err(e) = self.managed.check_running() {
            panic!("{e}");
        }
    }

    pub fn kill(&mut self) {
        self.managed.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.managed.kill();
    }
}

/// One fairway-proxy process.
#[derive(Debug)]
pub struct Proxy {
    pub id: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    proc: Proc,
}

impl Proxy {
    /// The process id, e.g. to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.proc.managed.child.id()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn port() -> u16 {
    // Inside our own network namespace only our processes bind ports, so a counter
    // below the kernel's ephemeral range (32768+) cannot collide, whereas a port the
    // kernel handed out and released can be taken again as some connection's source
    // port before the process we pass it to binds it.
    static NEXT: AtomicU16 = AtomicU16::new(FIRST_PORT);
    let port = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(port < EPHEMERAL_START, "e2e ran out of fixed ports");
    port
}

/// First port handed to the processes of a scenario (below the ephemeral range).
const FIRST_PORT: u16 = 20_000;
/// Linux's default `ip_local_port_range` starts here.
const EPHEMERAL_START: u16 = 32_768;

// ---- the world -------------------------------------------------------------------

/// A scenario's namespace, processes and helpers.
pub struct World {
    pub cluster: &'static TestCluster,
    pub ns: String,
    pub client: Client,
    pub logs: PathBuf,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub controller: Option<Proc>,
    pub proxies: Vec<Proxy>,
    controllers_started: usize,
}

impl World {
    /// A fresh namespace `PREFIX-xxxxxx` with the Route CRD installed; nothing running.
    pub async fn new(prefix: &str) -> World {
        let cluster = cluster_with_crd();
        let ns = (cluster.namespace(prefix).await).unwrap_or_else(|e| panic!("{e}"));
        let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
        let logs = cluster.dir.join(format!("e2e-{ns}"));
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("create {}: {e}", logs.display()));
        eprintln!("e2e: namespace {ns}, process logs in {}", logs.display());
        World {
            cluster,
            ns,
            client,
            logs,
            grpc: loopback(port()),
            admin: loopback(port()),
            controller: None,
            proxies: Vec::new(),
            controllers_started: 0,
        }
    }

    /// The controller and two proxies (`proxy-a`, `proxy-b`), each answering `/ready`.
    pub async fn start(&mut self) {
        self.start_controller().await;
        for id in ["proxy-a", "proxy-b"] {
            let (listen, admin) = (loopback(port()), loopback(port()));
            let args = vec![
                format!("--controller=http://{}", self.grpc),
                // Loopback; tests/tests/auth.rs covers TLS and tokens.
                "--controller-plaintext".to_owned(),
                format!("--listen={listen}"),
                format!("--admin-addr={admin}"),
                format!("--id={id}"),
                format!("--node=node-{id}"),
                "--zone=zone-a".to_owned(),
                "--log-format=text".to_owned(),
            ];
            let log = self.logs.join(format!("{id}.log"));
            // FAIRWAY_E2E_PROXY_LOG=debug: the proxies' RUST_LOG, for investigating.
            let envs = std::env::var("FAIRWAY_E2E_PROXY_LOG")
                .map(|filter| vec![("RUST_LOG".to_owned(), filter)])
                .unwrap_or_default();
            let proc = Proc::spawn("fairway-proxy", proxy_bin(), args, envs, log);
            self.proxies.push(Proxy {
                id: id.to_owned(),
                listen,
                admin,
                proc,
            });
        }
        for i in 0..self.proxies.len() {
            let admin = self.proxies[i].admin;
            let what = format!("{} /ready", self.proxies[i].id);
            self.wait_http_ok(admin, "/ready", &what, Some(i)).await;
        }
    }

    /// (Re)starts the controller on the same ports (so proxies reconnect to it) and
    /// waits for its `/ready`.
    pub async fn start_controller(&mut self) {
        self.controllers_started += 1;
        let args = vec![
            format!("--grpc-addr={}", self.grpc),
            format!("--admin-addr={}", self.admin),
            format!("--namespace={}", self.ns),
            "--log-format=text".to_owned(),
            "--no-auth".to_owned(),
        ];
        let envs = vec![
            (
                "KUBECONFIG".to_owned(),
                self.cluster.kubeconfig.display().to_string(),
            ),
            // Its status Lease lives in the scenario's namespace; a restarted controller
            // keeps the identity so it takes the Lease back at once.
            ("POD_NAMESPACE".to_owned(), self.ns.clone()),
            ("POD_NAME".to_owned(), "fairway-controller-e2e".to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        let log = self
            .logs
            .join(format!("controller-{}.log", self.controllers_started));
        let proc = Proc::spawn("fairway-controller", controller_bin(), args, envs, log);
        self.controller = Some(proc);
        let admin = self.admin;
        self.wait_http_ok(admin, "/ready", "controller /ready", None)
            .await;
    }

    /// SIGKILLs the controller (its whole process group) and reaps it.
    pub fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            c.kill();
        }
    }

    /// Panics (with the log tail) if a process we started has died.
    pub fn check_processes(&mut self) {
        if let Some(c) = self.controller.as_mut() {
            c.check();
        }
        for p in &mut self.proxies {
            p.proc.check();
        }
    }

    async fn wait_http_ok(
        &mut self,
        addr: SocketAddr,
        path: &str,
        what: &str,
        proxy: Option<usize>,
    ) {
        let deadline = Instant::now() + START;
        loop {
            match proxy {
                Some(i) => self.proxies[i].proc.check(),
                None => {
                    if let Some(c) = self.controller.as_mut() {
                        c.check();
                    }
                }
            }
            if let Some((200, _)) = http_get(addr, path).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {START:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // ---- Kubernetes objects ------------------------------------------------------

    pub async fn create_service(&self, name: &str, port: i32) {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns);
        let svc = fairway_tests::objects::service(&self.ns, name, "http", port);
        (api.create(&PostParams::default(), &svc).await)
            .unwrap_or_else(|e| panic!("create Service {name}: {e}"));
    }

    pub async fn create_slice(
        &self,
        name: &str,
        service: &str,
        port: i32,
        endpoints: Vec<Endpoint>,
    ) {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.ns);
        let s = fairway_tests::objects::slice(&self.ns, name, service, "http", port, endpoints);
        (api.create(&PostParams::default(), &s).await)
            .unwrap_or_else(|e| panic!("create EndpointSlice {name}: {e}"));
    }

    /// Replaces the endpoints of slice `name` (a merge patch replaces the list).
    pub async fn set_endpoints(&self, name: &str, endpoints: Vec<Endpoint>) {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.ns);
        let patch = serde_json::json!({ "endpoints": endpoints });
        (api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await)
            .unwrap_or_else(|e| panic!("patch EndpointSlice {name}: {e}"));
    }

    pub async fn create_route(&self, route: &Route) {
        let api: Api<Route> = Api::namespaced(self.client.clone(), &self.ns);
        (api.create(&PostParams::default(), route).await)
            .unwrap_or_else(|e| panic!("create Route: {e}"));
    }

    /// `kubectl -n NS ARGS`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        kubectl(self.cluster, &all, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The key the controller and proxies use for `service:port`.
    pub fn set_key(&self, service: &str, port: u16) -> String {
        format!("{}/{service}:{port}", self.ns)
    }

    // ---- convergence -------------------------------------------------------------

    /// The controller's `/debug/routes`.
    pub async fn controller_debug(&self) -> Option<Value> {
        let (status, body) = http_get(self.admin, "/debug/routes").await?;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// Waits until the controller's published table satisfies `published` and both
    /// proxies acked that version (the controller's per-proxy tracking), then checks
    /// each proxy's own table shows it. Returns the version.
    pub async fn converged(&mut self, what: &str, published: impl Fn(&Value) -> bool) -> Version {
        let deadline = Instant::now() + CONVERGE;
        let mut target: Option<Version> = None;
        loop {
            self.check_processes();
            if let Some(doc) = self.controller_debug().await {
                if target.is_none() && published(&doc) {
                    target = doc["version"].as_str().and_then(Version::parse);
                }
                if let Some(v) = target
                    && self
                        .proxies
                        .iter()
                        .all(|p| proxy_applied(&doc, &p.id).is_some_and(|a| a.covers(v)))
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {CONVERGE:?} waiting for both proxies to apply {what} (published version: {target:?}); \
                 last controller view: {}",
                self.controller_debug()
                    .await
                    .map(|d| d["proxies"].to_string())
                    .unwrap_or_default()
            );
            tokio::time::sleep(POLL).await;
        }
        let v = target.unwrap_or_else(|| unreachable!());
        for p in &self.proxies {
            let (status, body) = http_get(p.admin, "/debug/routes")
                .await
                .unwrap_or_else(|| panic!("{} /debug/routes did not answer", p.id));
            assert_eq!(status, 200, "{} /debug/routes", p.id);
            let doc: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{} /debug/routes: {e}", p.id));
            let own = doc["version"].as_str().and_then(Version::parse);
            assert!(
                own.is_some_and(|o| o.covers(v)),
                "{} acked {v} to the controller but its own table is at {:?}",
                p.id,
                doc["version"]
            );
        }
        v
    }

    /// Waits until set `key` in the controller's table has exactly these endpoint
    /// states (`ip:port` → `ready`/`terminating`/`not-ready`) and both proxies applied it.
    pub async fn converged_set(&mut self, key: &str, want: &[(&str, &str)]) -> Version {
        let mut want: Vec<(String, String)> = want
            .iter()
            .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
            .collect();
        want.sort();
        let what = format!("{key} = {want:?}");
        self.converged(&what, |doc| endpoint_states(doc, key) == want)
            .await
    }
}

/// `(address, state)` of every endpoint in set `key` of a controller `/debug/routes`,
/// sorted.
pub fn endpoint_states(doc: &Value, key: &str) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = doc["endpointSets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["key"] == key)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["address"].as_str().unwrap_or_default().to_owned(),
                e["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    states.sort();
    states
}

/// The newest version proxy `id` acked, as the controller reports it.
fn proxy_applied(doc: &Value, id: &str) -> Option<Version> {
    doc["proxies"]
        .as_array()?
        .iter()
        .filter(|p| p["id"] == id)
        .filter_map(|p| p["applied"].as_str().and_then(Version::parse))
        .max_by_key(|v| (v.epoch, v.sequence))
}

/// A table version: epoch (per controller process) and sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub epoch: u64,
    pub sequence: u64,
}

impl Version {
    /// `"EPOCH.SEQUENCE"`, as both `/debug/routes` documents show it.
    fn parse(s: &str) -> Option<Version> {
        let (e, q) = s.split_once('.')?;
        Some(Version {
            epoch: e.parse().ok()?,
            sequence: q.parse().ok()?,
        })
    }

    /// This version is `other` or a later one of the same controller.
    fn covers(self, other: Version) -> bool {
        self.epoch == other.epoch && self.sequence >= other.sequence
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.epoch, self.sequence)
    }
}

// ---- pods and traffic ---------------------------------------------------------------

/// `10.244.SUBNET.HOST`.
pub fn pod_ip(subnet: u8, host: u8) -> String {
    format!("10.244.{subnet}.{host}")
}

/// Starts pod `name` on `ip:8080`.
pub async fn pod(name: &str, ip: &str) -> Pod {
    let addr: SocketAddr = format!("{ip}:{POD_PORT}")
        .parse()
        .unwrap_or_else(|e| panic!("{ip}: {e}"));
    (Pod::start(name, addr).await).unwrap_or_else(|e| panic!("start pod {name} on {addr}: {e}"))
}

/// A keep-alive load of `connections` connections to `target` for `host`.
pub async fn load(target: SocketAddr, host: &str, connections: usize, start: Instant) -> Load {
    let config = LoadConfig {
        target,
        host: host.to_owned(),
        connections,
        pause: Duration::from_millis(2),
    };
    (Load::start(config, start).await).unwrap_or_else(|e| panic!("start a load on {target}: {e}"))
}

/// Waits until `load` has `n` samples taken at or after `after` (since `start`).
pub async fn samples_after(load: &Load, after: Duration, n: usize, what: &str) {
    eventually(TRAFFIC, what, || async {
        let count = load.samples().iter().filter(|s| s.at >= after).count();
        (count >= n).then_some(())
    })
    .await;
}

/// Failed samples (no pod answered).
pub fn failures(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.pod.is_none()).count()
}

/// Per pod name, how many samples in `[from, ..)` it answered.
pub fn counts(samples: &[Sample], from: Duration) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in samples.iter().filter(|s| s.at >= from) {
        let key = s.pod.clone().unwrap_or_else(|| "(failed)".to_owned());
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// One keep-alive HTTP/1.1 connection for requests with chosen hosts and paths.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream =
            (TcpStream::connect(addr).await).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            (hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await)
                .unwrap_or_else(|e| panic!("handshake with {addr}: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { sender }
    }

    /// `GET path` with `Host: host`: the status and the answering pod, if any.
    pub async fn get(&mut self, host: &str, path: &str) -> (u16, Option<String>, String) {
        (self.try_get(host, path).await).unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
    }

    /// [`Conn::get`], with the client's error instead of a panic.
    pub async fn try_get(
        &mut self,
        host: &str,
        path: &str,
    ) -> Result<(u16, Option<String>, String), hyper::Error> {
        self.try_request("GET", host, path, &[]).await
    }

    /// `METHOD path` with `Host: host` and `headers`: the status and the answering pod.
    pub async fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Option<String>, String) {
        (self.try_request(method, host, path, headers).await)
            .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"))
    }

    async fn try_request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Option<String>, String), hyper::Error> {
        let (status, head, body) = self.try_exchange(method, host, path, headers).await?;
        let pod = head.get(POD_HEADER).and_then(|v| v.to_str().ok());
        Ok((status, pod.map(str::to_owned), body))
    }

    /// One request: the status, every response header, and the body.
    pub async fn exchange(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, hyper::HeaderMap, String) {
        (self.try_exchange(method, host, path, headers).await)
            .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"))
    }

    async fn try_exchange(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, hyper::HeaderMap, String), hyper::Error> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::new())
            .unwrap_or_else(|e| panic!("request: {e}"));
        // The connection takes the next request only once the last one is done.
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let (head, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok((
            status,
            head.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

/// A one-shot `GET` (HTTP/1.0, connection closed): status and body, or `None` when
/// nothing answered within 2 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}
