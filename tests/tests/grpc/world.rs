//! The system under test for gRPC: a real `fairway-controller` (`--static-dir`) and
//! `fairway-proxy`, and Python `grpcio` pods `pod-1..N` on `127.0.0.{base+i}`, all from
//! `tests/grpc/peer.py`; clients are `peer.py` too (grpcio's own client).
//!
//! Routes (namespace `rpc`): `rpc.test` to every pod (upstream HTTP2, request timeout
//! 2s); `capped.test` the same with `timeouts.grpcMaximum: 1s`; `gone.test` to an
//! address where nothing listens (no retries); `h1.test` to the pods but left on
//! `HTTP1`, a misconfiguration a gRPC user meets; `empty.test` to a Service with no
//! endpoint; `missing.test` to a Service that does not exist; `slow.test` to the pods
//! with `perTry: 300ms` and no retries; `health.test` to the pods with gRPC health
//! checks every 200 ms.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fairway_tests::bins::{binary, free_port, has_flag, loopback};
use fairway_tests::gobuild::target_dir;
use fairway_tests::process::Managed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Start-up of every process and the first table.
const START: Duration = Duration::from_secs(60);
/// One client call, end to end (the longest test call is a few seconds).
const CLIENT: Duration = Duration::from_secs(60);

/// grpcio on PyPI, the version tests/run.sh installs (grpcio-health-checking too: the
/// pods' standard health service, released in step with grpcio).
pub const GRPCIO_VERSION: &str = "1.85.1";

/// Controller, proxy and pods; every process is killed when dropped.
pub struct World {
    base: u8,
    port: u16,
    listen: SocketAddr,
    admin: SocketAddr,
    dir: tempfile::TempDir,
    pods: Vec<Managed>,
    others: Vec<Managed>,
}

impl Drop for World {
    fn drop(&mut self) {
        for process in self.others.iter_mut().chain(self.pods.iter_mut()) {
            process.kill();
        }
    }
}

impl World {
    /// `pods` gRPC pods behind the routes above.
    pub async fn start(base: u8, pods: usize) -> World {
        let python = python();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let port = 18_700 + u16::from(base);
        let mut world = World {
            base,
            port,
            listen: loopback(free_port()),
            admin: loopback(free_port()),
            dir,
            pods: Vec::new(),
            others: Vec::new(),
        };
        for i in 1..=pods {
            let name = format!("pod-{i}");
            let args = [
                script().display().to_string(),
                "serve".to_owned(),
                name.clone(),
                world.ip(i),
                port.to_string(),
            ];
            let log = world.dir.path().join(format!("{name}.log"));
            let pod = Managed::spawn("grpc pod", &python, &args, log)
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            world.pods.push(pod);
        }
        for i in 1..=pods {
            wait_listening(&format!("{}:{port}", world.ip(i))).await;
        }
        let statics = world.dir.path().join("static");
        std::fs::create_dir_all(&statics).unwrap_or_else(|e| panic!("static dir: {e}"));
        std::fs::write(statics.join("routes.yaml"), ROUTES)
            .unwrap_or_else(|e| panic!("write routes: {e}"));
        std::fs::write(statics.join("services.yaml"), world.service_yaml(pods))
            .unwrap_or_else(|e| panic!("write services: {e}"));
        world.start_fairway(&statics);
        world.wait_routable().await;
        world
    }

    fn ip(&self, i: usize) -> String {
        format!("127.0.0.{}", usize::from(self.base) + i)
    }

    /// The proxy's listening address, for the clients.
    pub fn proxy(&self) -> String {
        self.listen.to_string()
    }

    /// Pod `i`'s own address (1-based), to ask it directly.
    pub fn pod(&self, i: usize) -> String {
        format!("{}:{}", self.ip(i), self.port)
    }

    /// The process id of pod `i` (1-based).
    pub fn pod_pid(&self, i: usize) -> u32 {
        self.pods[i - 1].child.id()
    }

    fn service_yaml(&self, pods: usize) -> String {
        let mut endpoints = String::new();
        for i in 1..=pods {
            endpoints.push_str(&format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: true, serving: true, \
                 terminating: false}}\n",
                self.ip(i)
            ));
        }
        // `gone`: one endpoint past the pods, where nothing listens.
        let gone = self.ip(pods + 1);
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: empty, namespace: rpc}}
spec:
  ports:
  - {{name: grpc, port: 8080, targetPort: {port}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: empty-abc12, namespace: rpc, labels: {{kubernetes.io/service-name: empty}}}}
addressType: IPv4
ports:
- {{name: grpc, port: {port}, protocol: TCP}}
endpoints: []
---
apiVersion: v1
kind: Service
metadata: {{name: gone, namespace: rpc}}
spec:
  ports:
  - {{name: grpc, port: 8080, targetPort: {port}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: gone-abc12, namespace: rpc, labels: {{kubernetes.io/service-name: gone}}}}
addressType: IPv4
ports:
- {{name: grpc, port: {port}, protocol: TCP}}
endpoints:
- addresses: [\"{gone}\"]
  conditions: {{ready: true, serving: true, terminating: false}}
---
apiVersion: v1
kind: Service
metadata: {{name: rpc, namespace: rpc}}
spec:
  ports:
  - {{name: grpc, port: 8080, targetPort: {port}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: rpc-abc12, namespace: rpc, labels: {{kubernetes.io/service-name: rpc}}}}
addressType: IPv4
ports:
- {{name: grpc, port: {port}, protocol: TCP}}
endpoints:
{endpoints}",
            port = self.port
        )
    }

    fn start_fairway(&mut self, statics: &Path) {
        let grpc = loopback(free_port());
        let controller_admin = loopback(free_port());
        let mut args = vec![
            format!("--static-dir={}", statics.display()),
            format!("--grpc-addr={grpc}"),
            format!("--admin-addr={controller_admin}"),
            "--log-format=text".to_owned(),
        ];
        let controller_bin = binary("fairway-controller");
        if has_flag(&controller_bin, "--no-auth") {
            args.push("--no-auth".to_owned());
        }
        let log = self.dir.path().join("controller.log");
        let controller = Managed::spawn("fairway-controller", &controller_bin, &args, log)
            .unwrap_or_else(|e| panic!("start the controller: {e}"));
        self.others.push(controller);
        let proxy_bin = binary("fairway-proxy");
        let mut args = vec![
            format!("--controller=http://{grpc}"),
            format!("--listen={}", self.listen),
            format!("--admin-addr={}", self.admin),
            "--id=grpc".to_owned(),
            "--node=local".to_owned(),
            "--log-format=text".to_owned(),
        ];
        if has_flag(&proxy_bin, "--controller-plaintext") {
            args.push("--controller-plaintext".to_owned());
        }
        let proxy = Managed::spawn_with_env(
            "fairway-proxy",
            &proxy_bin,
            &args,
            &[("RUST_LOG".to_owned(), "info,fairway_proxy=debug".to_owned())],
            self.dir.path().join("proxy.log"),
        )
        .unwrap_or_else(|e| panic!("start the proxy: {e}"));
        self.others.push(proxy);
    }

    /// Waits until `rpc.test` reaches a pod (a successful `Stats` call through the proxy).
    async fn wait_routable(&mut self) {
        let deadline = Instant::now() + START;
        loop {
            let out = self
                .run(&["call", &self.proxy(), "rpc.test", "Stats", "{}", "5"])
                .await;
            if out.as_ref().is_some_and(|o| o["code"] == "OK") {
                return;
            }
            for process in &mut self.others {
                if let Err(e) = process.check_running() {
                    panic!("{e}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "rpc.test was not routed within {START:?} (last: {out:?}); logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One unary call of `method` through the proxy to `authority`, with a deadline of
    /// `timeout` seconds (0: none); returns peer.py's JSON (`code`, `details`, ...).
    pub async fn call(
        &self,
        authority: &str,
        method: &str,
        body: &str,
        timeout: f64,
    ) -> serde_json::Value {
        self.client(&[
            "call",
            &self.proxy(),
            authority,
            method,
            body,
            &timeout.to_string(),
        ])
        .await
    }

    /// `Stats` asked of pod `i` directly, not through the proxy.
    pub async fn stats(&self, i: usize) -> serde_json::Value {
        let out = self
            .client(&["call", &self.pod(i), "rpc.test", "Stats", "{}", "5"])
            .await;
        out["reply"].clone()
    }

    /// Sets what pod `i`'s standard health service answers (`SERVING`,
    /// `NOT_SERVING`), asked of the pod directly.
    pub async fn set_health(&self, i: usize, status: &str) {
        let body = format!(r#"{{"status": "{status}"}}"#);
        let out = self
            .client(&["call", &self.pod(i), "rpc.test", "SetHealth", &body, "5"])
            .await;
        assert_eq!(out["code"], "OK", "SetHealth on pod {i}: {out}");
    }

    /// Runs one peer.py client and returns its JSON line; a client that crashed fails
    /// the test with its output and the proxy's log tail.
    pub async fn client(&self, args: &[&str]) -> serde_json::Value {
        self.run(args).await.unwrap_or_else(|| {
            panic!(
                "peer.py {args:?} printed no result\nproxy log tail:\n{}",
                self.proxy_log_tail()
            )
        })
    }

    async fn run(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut command = tokio::process::Command::new(python());
        command.arg(script()).args(args).kill_on_drop(true);
        let output = tokio::time::timeout(CLIENT, command.output())
            .await
            .unwrap_or_else(|_| panic!("peer.py {args:?} ran longer than {CLIENT:?}"))
            .unwrap_or_else(|e| panic!("run peer.py: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or("");
        serde_json::from_str(last).ok()
    }

    pub fn proxy_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The proxy's `/metrics`.
    pub async fn proxy_metrics(&self) -> String {
        let mut stream = TcpStream::connect(self.admin)
            .await
            .unwrap_or_else(|e| panic!("connect to the admin port: {e}"));
        let request = b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
        stream
            .write_all(request)
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut text))
            .await
            .unwrap_or_else(|_| panic!("GET /metrics took over 10 s"))
            .unwrap_or_else(|e| panic!("read /metrics: {e}"));
        text
    }
}

const ROUTES: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: rpc, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [rpc.test]
  rules:
  - backends: [{service: rpc, port: 8080}]
  upstream: {protocol: HTTP2}
  timeouts: {request: 2s}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: capped, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [capped.test]
  rules:
  - backends: [{service: rpc, port: 8080}]
  upstream: {protocol: HTTP2}
  timeouts: {request: 2s, grpcMaximum: 1s}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: h1, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [h1.test]
  rules:
  - backends: [{service: rpc, port: 8080}]
  upstream: {protocol: HTTP1}
  retries: {attempts: 0}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: empty, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [empty.test]
  rules:
  - backends: [{service: empty, port: 8080}]
  upstream: {protocol: HTTP2}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: missing, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [missing.test]
  rules:
  - backends: [{service: nosuch, port: 8080}]
  upstream: {protocol: HTTP2}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: slow, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [slow.test]
  rules:
  - backends: [{service: rpc, port: 8080}]
  upstream: {protocol: HTTP2}
  timeouts: {perTry: 300ms}
  retries: {attempts: 0}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: health, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [health.test]
  rules:
  - backends: [{service: rpc, port: 8080}]
  upstream: {protocol: HTTP2}
  healthCheck:
    grpc: {interval: 200ms, timeout: 200ms, unhealthyThreshold: 2, healthyThreshold: 1}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: gone, namespace: rpc, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [gone.test]
  rules:
  - backends: [{service: gone, port: 8080}]
  upstream: {protocol: HTTP2}
  retries: {attempts: 0}
";

async fn wait_listening(addr: &str) {
    let deadline = Instant::now() + START;
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no pod listening on {addr} within {START:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The venv's Python, checked to import `grpc` (grpcio) and `grpc_health`
/// (grpcio-health-checking).
fn python() -> PathBuf {
    let python = target_dir().join("tools/venv/bin/python3");
    let ok = Command::new(&python)
        .args(["-c", "import grpc, grpc_health.v1.health"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import `grpc` and `grpc_health`: run ./tests/run.sh (it creates the \
         venv and installs grpcio and grpcio-health-checking from PyPI), or `python3 -m \
         venv target/tools/venv && target/tools/venv/bin/pip install \
         grpcio=={GRPCIO_VERSION} grpcio-health-checking=={GRPCIO_VERSION}`",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc/peer.py")
}
