//! The system under test for upgrades: a real `fairway-controller` (`--static-dir`) and
//! `fairway-proxy`, WebSocket pods `pod-1..N` on `127.0.0.{base+i}`, an HTTP/2-only
//! WebSocket pod `h2pod-1` on `127.0.0.{base+8}` (Hypercorn, RFC 8441) and a server-sent
//! events pod on `127.0.0.{base+9}`, all Python processes from `tests/upgrade/ws.py`.
//!
//! Routes: `chat.test` (RoundRobin, HTTP idleTimeout 1s, drainTimeout 2s) and
//! `least.test` (LeastRequest) to the WebSocket pods; `h2chat.test` (upstream HTTP2) to
//! the HTTP/2 pod; `sse.test` (request timeout 2s) to the events pod.

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
/// One client scenario, end to end.
const CLIENT: Duration = Duration::from_secs(120);

/// Which pods an EndpointSlice lists, and which of them are terminating.
#[derive(Clone, Debug)]
pub struct Slice {
    pods: Vec<usize>,
    terminating: Vec<usize>,
}

impl Slice {
    /// Pods `1..=n`, all ready.
    pub fn all(n: usize) -> Slice {
        Slice {
            pods: (1..=n).collect(),
            terminating: Vec::new(),
        }
    }

    /// Pod `i` is terminating (serving, not ready), as during a rollout.
    pub fn terminating(mut self, i: usize) -> Slice {
        self.terminating.push(i);
        self
    }
}

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
    pub async fn start(base: u8, pods: usize) -> World {
        World::start_with(base, pods, Slice::all(pods)).await
    }

    /// `pods` WebSocket pods, the slice listing `slice` of them.
    pub async fn start_with(base: u8, pods: usize, slice: Slice) -> World {
        let python = python();
        let script = script();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let port = 18_500 + u16::from(base);
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
            let args = ["serve", &name, &world.ip(i), &port.to_string()].map(str::to_owned);
            let args = [vec![script.display().to_string()], args.to_vec()].concat();
            let log = world.dir.path().join(format!("{name}.log"));
            let pod = Managed::spawn("websocket pod", &python, &args, log)
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            world.pods.push(pod);
        }
        let script = script.display().to_string();
        let port_text = port.to_string();
        let (sse_ip, h2_ip) = (world.ip(9), world.ip(8));
        for (what, args, log) in [
            ("sse pod", ["sse", &sse_ip, &port_text].to_vec(), "sse.log"),
            (
                "http/2 websocket pod",
                ["serve-h2", "h2pod-1", &h2_ip, &port_text].to_vec(),
                "h2pod.log",
            ),
        ] {
            let args: Vec<String> = std::iter::once(script.as_str())
                .chain(args)
                .map(str::to_owned)
                .collect();
            let process = Managed::spawn(what, &python, &args, world.dir.path().join(log))
                .unwrap_or_else(|e| panic!("start the {what}: {e}"));
            world.others.push(process);
        }
        for i in (1..=pods).chain([8, 9]) {
            wait_listening(&format!("{}:{port}", world.ip(i))).await;
        }
        let statics = world.statics();
        std::fs::create_dir_all(&statics).unwrap_or_else(|e| panic!("static dir: {e}"));
        world.write_static(&slice);
        world.start_fairway();
        world.wait_routable().await;
        world
    }

    fn ip(&self, i: usize) -> String {
        format!("127.0.0.{}", usize::from(self.base) + i)
    }

    fn statics(&self) -> PathBuf {
        self.dir.path().join("static")
    }

    /// The proxy's listening address, for the Python clients.
    pub fn proxy(&self) -> String {
        self.listen.to_string()
    }

    /// The process id of WebSocket pod `i` (1-based).
    pub fn pod_pid(&self, i: usize) -> u32 {
        self.pods[i - 1].child.id()
    }

    /// Writes `slice` outside the static directory and returns it and where a rename
    /// makes it the chat EndpointSlice (the rename is atomic, as a user's `mv` is).
    pub fn stage(&self, slice: Slice) -> (String, String) {
        let src = self.dir.path().join("staged-slice.yaml");
        std::fs::write(&src, self.slice_yaml(&slice))
            .unwrap_or_else(|e| panic!("write the staged slice: {e}"));
        let dst = self.statics().join("chat-slice.yaml");
        (src.display().to_string(), dst.display().to_string())
    }

    fn slice_yaml(&self, slice: &Slice) -> String {
        let mut endpoints = String::new();
        for &i in &slice.pods {
            let terminating = slice.terminating.contains(&i);
            endpoints.push_str(&format!(
                "- addresses: [\"{ip}\"]\n  conditions: {{ready: {ready}, serving: true, \
                 terminating: {terminating}}}\n  targetRef: {{kind: Pod, name: pod-{i}, namespace: up}}\n",
                ip = self.ip(i),
                ready = !terminating,
            ));
        }
        format!(
            "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: chat-abc12, namespace: up, labels: {{kubernetes.io/service-name: chat}}}}
addressType: IPv4
ports:
- {{name: http, port: {port}, protocol: TCP}}
endpoints:
{endpoints}",
            port = self.port
        )
    }

    fn write_static(&self, slice: &Slice) {
        let port = self.port;
        let sse_ip = self.ip(9);
        let h2_ip = self.ip(8);
        let routes = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: chat, namespace: up, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [chat.test]
  rules:
  - backends: [{service: chat, port: 8080}]
  upstream: {idleTimeout: 1s, drainTimeout: 2s}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: least, namespace: up, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [least.test]
  rules:
  - backends: [{service: chat, port: 8080}]
  loadBalancer: {policy: LeastRequest}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: sse, namespace: up, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [sse.test]
  rules:
  - backends: [{service: sse, port: 8080}]
  timeouts: {request: 2s}
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: h2chat, namespace: up, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [h2chat.test]
  rules:
  - backends: [{service: h2chat, port: 8080}]
  upstream: {protocol: HTTP2}
";
        let services = [
            service_yaml("chat", port, None),
            service_yaml("sse", port, Some(&sse_ip)),
            service_yaml("h2chat", port, Some(&h2_ip)),
        ]
        .join("---\n");
        let statics = self.statics();
        for (name, text) in [
            ("routes.yaml", routes.to_owned()),
            ("services.yaml", services),
            ("chat-slice.yaml", self.slice_yaml(slice)),
        ] {
            std::fs::write(statics.join(name), text)
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
    }

    fn start_fairway(&mut self) {
        let grpc = loopback(free_port());
        let controller_admin = loopback(free_port());
        let mut args = vec![
            format!("--static-dir={}", self.statics().display()),
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
            "--id=upgrade".to_owned(),
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

    /// Waits until `chat.test` reaches a pod (the pod's own answer to a plain GET, not
    /// the proxy's 404 or 503).
    async fn wait_routable(&mut self) {
        let deadline = Instant::now() + START;
        loop {
            let head = tokio::time::timeout(
                Duration::from_secs(5),
                exchange(
                    self.listen,
                    b"GET /chat HTTP/1.1\r\nHost: chat.test\r\nConnection: close\r\n\r\n",
                ),
            )
            .await;
            if let Ok(Ok(head)) = head
                && head.starts_with("HTTP/1.1")
                && !head.contains("fairway-error")
            {
                return;
            }
            for process in &mut self.others {
                if let Err(e) = process.check_running() {
                    panic!("{e}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "chat.test was not routed within {START:?}; logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs one `ws.py` client scenario and returns its JSON result; a failed scenario
    /// fails the test with its output and the proxy's log tail.
    pub async fn client(&self, args: &[&str]) -> serde_json::Value {
        let mut command = tokio::process::Command::new(python());
        command.arg(script()).args(args).kill_on_drop(true);
        let output = tokio::time::timeout(CLIENT, command.output())
            .await
            .unwrap_or_else(|_| panic!("ws.py {args:?} ran longer than {CLIENT:?}"))
            .unwrap_or_else(|e| panic!("run ws.py: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stdout.lines().last().unwrap_or("");
        let value: serde_json::Value =
            serde_json::from_str(last).unwrap_or(serde_json::Value::Null);
        assert!(
            output.status.success() && value.get("error").is_none(),
            "ws.py {args:?} failed ({}):\n{stdout}\n{stderr}\nproxy log tail:\n{}",
            output.status,
            self.proxy_log_tail()
        );
        value
    }

    fn proxy_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Sends `request` raw to the proxy and returns what came back (lossy UTF-8).
    pub async fn raw(&self, request: &str) -> String {
        tokio::time::timeout(
            Duration::from_secs(10),
            exchange(self.listen, request.as_bytes()),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer to {request:?}"))
        .unwrap_or_else(|e| panic!("exchange {request:?}: {e}"))
    }

    /// The proxy's `/metrics`.
    pub async fn proxy_metrics(&self) -> String {
        let request = b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
        exchange(self.admin, request)
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
    }
}

/// Writes `request`, reads until the peer closes (or 5 s pass with nothing more).
async fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => response.extend_from_slice(&buffer[..n]),
            Ok(Err(e)) if response.is_empty() => return Err(e),
            Ok(Err(_)) => break,
        }
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

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

/// The venv's Python, checked to import `websockets` and `h2`.
fn python() -> PathBuf {
    let python = target_dir().join("tools/venv/bin/python3");
    let ok = Command::new(&python)
        .args(["-c", "import websockets, h2, hypercorn"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import `websockets`, `h2` and `hypercorn`: run ./tests/run.sh (it creates \
         the venv and installs them from PyPI), or `python3 -m venv target/tools/venv && \
         target/tools/venv/bin/pip install websockets==17.4 h2==4.4.1 hypercorn==0.18.0`",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("upgrade/ws.py")
}

/// A Service `name` in namespace `up` (port 8080 to `port`) and, with `ip`, its
/// EndpointSlice listing that one ready address.
fn service_yaml(name: &str, port: u16, ip: Option<&str>) -> String {
    let service = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: up}}
spec:
  ports:
  - {{name: http, port: 8080, targetPort: {port}, protocol: TCP}}
"
    );
    let Some(ip) = ip else {
        return service;
    };
    format!(
        "{service}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-abc12, namespace: up, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports:
- {{name: http, port: {port}, protocol: TCP}}
endpoints:
- addresses: [\"{ip}\"]
  conditions: {{ready: true, serving: true, terminating: false}}
"
    )
}
