//! The system under test for fairness: a real `fairway-controller` (`--static-dir`),
//! real `fairway-proxy` processes, and stand-in pods (`fairway::demo::pods`, real HTTP
//! servers) `pod-1..N` on `127.0.0.{base+i}`. One Route, `fair/orders` (host
//! `orders.fair`), over Service `orders` port 8080, RoundRobin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fairway::demo::pods::{POD_HEADER, Pod};
use fairway_tests::bins::{binary, free_port, has_flag, loopback};
use fairway_tests::process::Managed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Start-up of every process and the first table.
const START: Duration = Duration::from_secs(60);
/// Any one wait for a figure to show.
pub const WAIT: Duration = Duration::from_secs(30);

/// One proxy process and its addresses.
pub struct Proxy {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub id: String,
}

/// Controller, proxies and pods; every process is killed when dropped.
pub struct World {
    base: u8,
    pub port: u16,
    pub controller_admin: SocketAddr,
    grpc: SocketAddr,
    pub dir: tempfile::TempDir,
    pub pods: Vec<Pod>,
    pub proxies: Vec<Proxy>,
    processes: Vec<Managed>,
}

impl Drop for World {
    fn drop(&mut self) {
        for process in &mut self.processes {
            process.kill();
        }
    }
}

impl World {
    /// `pods` pods (all started), the slice listing the first `listed` of them.
    pub async fn start(base: u8, pods: usize, listed: usize) -> World {
        World::start_with(base, pods, listed, ROUTES).await
    }

    /// [`World::start`] with these Routes (YAML, over Service `orders` port 8080).
    pub async fn start_with(base: u8, pods: usize, listed: usize, routes: &str) -> World {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let port = free_port();
        let mut world = World {
            base,
            port,
            controller_admin: loopback(free_port()),
            grpc: loopback(free_port()),
            dir,
            pods: Vec::new(),
            proxies: Vec::new(),
            processes: Vec::new(),
        };
        for i in 1..=pods {
            let addr: SocketAddr = format!("{}:{port}", world.ip(i))
                .parse()
                .unwrap_or_else(|e| panic!("pod address: {e}"));
            let pod = Pod::start(&format!("pod-{i}"), addr)
                .await
                .unwrap_or_else(|e| panic!("start pod-{i} on {addr}: {e}"));
            world.pods.push(pod);
        }
        std::fs::create_dir_all(world.statics()).unwrap_or_else(|e| panic!("static dir: {e}"));
        std::fs::write(world.statics().join("routes.yaml"), routes)
            .unwrap_or_else(|e| panic!("write routes: {e}"));
        world.list(listed);
        world.start_controller();
        world
    }

    pub fn ip(&self, i: usize) -> String {
        format!("127.0.0.{}", usize::from(self.base) + i)
    }

    /// Pod `i`'s address: its IP and the Service's target port.
    pub fn pod_addr(&self, i: usize) -> SocketAddr {
        format!("{}:{}", self.ip(i), self.port)
            .parse()
            .unwrap_or_else(|e| panic!("pod address: {e}"))
    }

    fn statics(&self) -> PathBuf {
        self.dir.path().join("static")
    }

    /// Makes the slice list pods `1..=n`, as the EndpointSlice controller would after
    /// a scale to `n` (written aside, then renamed: atomic, as a user's `mv`).
    pub fn list(&self, n: usize) {
        let mut endpoints = String::new();
        for i in 1..=n {
            endpoints.push_str(&format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: true, serving: true, \
                 terminating: false}}\n  targetRef: {{kind: Pod, name: pod-{i}, namespace: fair}}\n",
                self.ip(i)
            ));
        }
        self.write_slice(&endpoints);
    }

    /// Makes the slice list `endpoints` (the YAML list items of its `endpoints`).
    pub fn write_slice(&self, endpoints: &str) {
        let yaml = format!(
            "apiVersion: v1
kind: Service
metadata: {{name: orders, namespace: fair}}
spec:
  ports: [{{name: http, port: 8080, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: orders-abc12, namespace: fair, labels: {{kubernetes.io/service-name: orders}}}}
addressType: IPv4
ports:
- {{name: http, port: {port}, protocol: TCP}}
endpoints:
{endpoints}",
            port = self.port
        );
        let staged = self.dir.path().join("staged.yaml");
        std::fs::write(&staged, yaml).unwrap_or_else(|e| panic!("write the slice: {e}"));
        std::fs::rename(&staged, self.statics().join("orders.yaml"))
            .unwrap_or_else(|e| panic!("move the slice in: {e}"));
    }

    fn start_controller(&mut self) {
        let mut args = vec![
            format!("--static-dir={}", self.statics().display()),
            format!("--grpc-addr={}", self.grpc),
            format!("--admin-addr={}", self.controller_admin),
            "--log-format=text".to_owned(),
        ];
        let bin = binary("fairway-controller");
        if has_flag(&bin, "--no-auth") {
            args.push("--no-auth".to_owned());
        }
        let log = self.dir.path().join("controller.log");
        let controller = Managed::spawn("fairway-controller", &bin, &args, log)
            .unwrap_or_else(|e| panic!("start the controller: {e}"));
        self.processes.push(controller);
    }

    /// Starts proxy `id` with `extra` flags and waits until it routes to a pod.
    pub async fn add_proxy(&mut self, id: &str, extra: &[&str]) -> usize {
        let proxy = Proxy {
            listen: loopback(free_port()),
            admin: loopback(free_port()),
            id: id.to_owned(),
        };
        let bin = binary("fairway-proxy");
        let mut args = vec![
            format!("--controller=http://{}", self.grpc),
            format!("--listen={}", proxy.listen),
            format!("--admin-addr={}", proxy.admin),
            format!("--id={id}"),
            "--node=local".to_owned(),
            "--log-format=text".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        if has_flag(&bin, "--controller-plaintext") {
            args.push("--controller-plaintext".to_owned());
        }
        let log = self.dir.path().join(format!("{id}.log"));
        let process = Managed::spawn("fairway-proxy", &bin, &args, log)
            .unwrap_or_else(|e| panic!("start {id}: {e}"));
        self.processes.push(process);
        self.proxies.push(proxy);
        let index = self.proxies.len() - 1;
        let deadline = Instant::now() + START;
        loop {
            if let Ok(answer) = get(self.proxies[index].listen, "orders.fair", "/").await
                && answer.starts_with("HTTP/1.1 200")
            {
                return index;
            }
            for process in &mut self.processes {
                if let Err(e) = process.check_running() {
                    panic!("{e}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "orders.fair was not routed through {id} within {START:?}; logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `n` requests through proxy `index`, one connection each.
    pub async fn requests(&self, index: usize, n: usize) {
        for _ in 0..n {
            let answer = get(self.proxies[index].listen, "orders.fair", "/")
                .await
                .unwrap_or_else(|e| panic!("request through the proxy: {e}"));
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "a pod answered: {answer}"
            );
        }
    }

    /// `GET path` on the controller's admin port: the body.
    pub async fn controller(&self, path: &str) -> String {
        admin_get(self.controller_admin, path).await
    }

    /// `GET /metrics` on proxy `index`'s admin port.
    pub async fn proxy_metrics(&self, index: usize) -> String {
        admin_get(self.proxies[index].admin, "/metrics").await
    }
}

/// The body of `GET path` on an admin port; panics on anything but 200.
pub async fn admin_get(addr: SocketAddr, path: &str) -> String {
    let answer = get(addr, "admin", path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path} on {addr}: {head}"
    );
    body.to_owned()
}

/// One HTTP/1.1 GET on a fresh connection; the whole answer as text.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<String> {
    get_with(addr, host, path, &[]).await
}

/// [`get`] with extra request `headers`.
pub async fn get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer within 10 s")))
}

/// A keep-alive HTTP/1.1 pod on `addr` that answers every request after `delay` as
/// `name` (the demo pods' header), with `extra` header lines (each ending in `\r\n`).
pub async fn scripted_pod(
    addr: SocketAddr,
    name: &'static str,
    delay: Duration,
    extra: &'static str,
) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind pod {name} on {addr}: {e}"));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end);
                    tokio::time::sleep(delay).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\n{POD_HEADER}: {name}\r\n{extra}content-length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// The pod that answered (the demo pods' header), from a whole HTTP/1.x answer that
/// must be a `200`.
pub fn pod_of(answer: &str) -> String {
    let ok = answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200");
    assert!(ok, "{answer}");
    answer
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case(POD_HEADER)
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("a pod answered: {answer}"))
}

/// One ready endpoint of a slice (see [`World::write_slice`]): `ip`, its pod `name`,
/// and `extra` fields (YAML lines, each indented by two and ending in a newline).
pub fn slice_endpoint(ip: &str, name: &str, extra: &str) -> String {
    format!(
        "- addresses: [\"{ip}\"]\n  conditions: {{ready: true, serving: true, terminating: false}}\n\
         {extra}  targetRef: {{kind: Pod, name: {name}, namespace: fair}}\n"
    )
}

/// The value of the first line of `text` starting with `series`.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

const ROUTES: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: orders, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [orders.fair]
  rules:
  - backends: [{service: orders, port: 8080}]
";
