//! The system under test: a real `fairway-controller` in `--static-dir` mode and a real
//! `fairway-proxy` (both as processes, binaries from this build), routing to an HTTP/1.1
//! and an h2c [`Backend`] on 127.0.0.21 and 127.0.0.22.
//!
//! Routes: `h1.test` and `localhost` go to the HTTP/1.1 backend; `h2c.test` and
//! `127.0.0.1` (the `:authority` h2spec and slowhttptest send) to the h2c backend.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fairway_tests::bins::{binary, free_port, has_flag, loopback};
use fairway_tests::process::Managed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::{Backend, Protocol};

/// The proxy's header-read timeout in these runs: short, so slowloris runs stay short.
/// (The default is 10 s; the mechanism is the same.)
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Start-up of both processes and the first table (binaries already built).
const START: Duration = Duration::from_secs(60);
/// One probe request, end to end.
const PROBE: Duration = Duration::from_secs(5);

pub const H1_HOST: &str = "h1.test";
pub const H2C_HOST: &str = "h2c.test";

/// Controller, proxy and backends; every process is killed when dropped.
#[derive(Debug)]
pub struct Stack {
    pub listen: SocketAddr,
    pub h1: Backend,
    pub h2c: Backend,
    pub dir: tempfile::TempDir,
    controller: Managed,
    proxy: Managed,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.proxy.kill();
        self.controller.kill();
    }
}

impl Stack {
    /// Starts everything and waits until both routes answer through the proxy.
    pub async fn start(extra_proxy_args: &[&str]) -> Stack {
        let h1 = Backend::start("h1", [127, 0, 0, 21], Protocol::Http1).await;
        let h2c = Backend::start("h2c", [127, 0, 0, 22], Protocol::H2c).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let statics = dir.path().join("static");
        std::fs::create_dir_all(&statics).unwrap_or_else(|e| panic!("static dir: {e}"));
        write_static(&statics, &h1, &h2c);

        let controller_bin = binary("fairway-controller");
        let proxy_bin = binary("fairway-proxy");
        let (grpc, controller_admin) = (loopback(free_port()), loopback(free_port()));
        let mut args = vec![
            format!("--static-dir={}", statics.display()),
            format!("--grpc-addr={grpc}"),
            format!("--admin-addr={controller_admin}"),
            "--log-format=text".to_owned(),
        ];
        if has_flag(&controller_bin, "--no-auth") {
            args.push("--no-auth".to_owned());
        }
        let controller = Managed::spawn(
            "fairway-controller",
            &controller_bin,
            &args,
            dir.path().join("controller.log"),
        )
        .unwrap_or_else(|e| panic!("start the controller: {e}"));

        let (listen, admin) = (loopback(free_port()), loopback(free_port()));
        let mut args = vec![
            format!("--controller=http://{grpc}"),
            format!("--listen={listen}"),
            format!("--admin-addr={admin}"),
            "--id=conformance".to_owned(),
            "--node=local".to_owned(),
            "--log-format=text".to_owned(),
            format!("--header-read-timeout={}s", HEADER_READ_TIMEOUT.as_secs()),
        ];
        if has_flag(&proxy_bin, "--controller-plaintext") {
            args.push("--controller-plaintext".to_owned());
        }
        args.extend(extra_proxy_args.iter().map(|a| (*a).to_owned()));
        let proxy = Managed::spawn_with_env(
            "fairway-proxy",
            &proxy_bin,
            &args,
            &[("RUST_LOG".to_owned(), "info".to_owned())],
            dir.path().join("proxy.log"),
        )
        .unwrap_or_else(|e| panic!("start the proxy: {e}"));

        let mut stack = Stack {
            listen,
            h1,
            h2c,
            dir,
            controller,
            proxy,
        };
        stack.wait_routable().await;
        stack.h1.clear();
        stack.h2c.clear();
        stack
    }

    async fn wait_routable(&mut self) {
        let deadline = Instant::now() + START;
        loop {
            self.check_running();
            let h1 = self.get(H1_HOST, "/").await;
            let h2c = self.get(H2C_HOST, "/").await;
            if h1 == Some(200) && h2c == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not route both hosts within {START:?} (last: {h1:?}, {h2c:?}); \
                 logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Panics, with the log tail, if the controller or the proxy has exited.
    pub fn check_running(&mut self) {
        for process in [&mut self.controller, &mut self.proxy] {
            if let Err(e) = process.check_running() {
                panic!("{e}");
            }
        }
    }

    /// The proxy's resident set size in KiB (`VmRSS`).
    pub fn proxy_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proxy.child.id()))
            .unwrap_or_else(|e| panic!("read the proxy's /proc status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in the proxy's /proc status"))
    }

    /// One `GET` through the proxy on a fresh connection: the status, or `None` when the
    /// request failed or took longer than [`PROBE`].
    pub async fn get(&self, host: &str, path: &str) -> Option<u16> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let response = tokio::time::timeout(PROBE, exchange(self.listen, request.as_bytes()))
            .await
            .ok()?
            .ok()?;
        status_of(&response)
    }
}

/// Writes `request`, reads until the server closes.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(response)
}

/// The status of an HTTP/1.x response head.
pub fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

/// The Route, Services and EndpointSlices, as `kubectl get -o yaml` would show them.
fn write_static(dir: &std::path::Path, h1: &Backend, h2c: &Backend) {
    let route = |name: &str, hosts: &str, service: &str| {
        format!(
            "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: {name}, namespace: conf, creationTimestamp: \"2026-01-01T00:00:00Z\"}}
spec:
  hosts: [{hosts}]
  rules:
  - pathPrefix: /
    backends:
    - {{service: {service}, port: 8080}}
"
        )
    };
    let service = |name: &str, backend: &Backend, app_protocol: &str| {
        let (ip, port) = (backend.addr.ip(), backend.addr.port());
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: conf}}
spec:
  ports:
  - {{name: http, port: 8080, targetPort: {port}, protocol: TCP{app_protocol}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc12
  namespace: conf
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports:
- {{name: http, port: {port}, protocol: TCP{app_protocol}}}
endpoints:
- addresses: [\"{ip}\"]
  conditions: {{ready: true, serving: true, terminating: false}}
  targetRef: {{kind: Pod, name: {name}-0, namespace: conf}}
"
        )
    };
    let files = [
        ("route-h1.yaml", route("h1", "h1.test, localhost", "h1")),
        ("route-h2c.yaml", route("h2c", "h2c.test, 127.0.0.1", "h2c")),
        ("h1.yaml", service("h1", h1, "")),
        (
            "h2c.yaml",
            service("h2c", h2c, ", appProtocol: kubernetes.io/h2c"),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
}

/// What [`Stack::while_probing`] saw besides the work's own output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Probes {
    pub ok: usize,
    pub failed: usize,
    pub rss_before_kib: u64,
    pub rss_max_kib: u64,
}

/// Between probe requests and RSS samples.
const PROBE_EVERY: Duration = Duration::from_millis(250);

impl Stack {
    /// Runs `work` (an abuse tool) while sending a normal request through the proxy and
    /// sampling its RSS every [`PROBE_EVERY`]; panics if the proxy exits meanwhile.
    pub async fn while_probing<F: std::future::Future>(&mut self, work: F) -> (F::Output, Probes) {
        let rss_before_kib = self.proxy_rss_kib();
        let mut probes = Probes {
            rss_before_kib,
            rss_max_kib: rss_before_kib,
            ..Probes::default()
        };
        let mut work = std::pin::pin!(work);
        let output = loop {
            tokio::select! {
                output = &mut work => break output,
                () = tokio::time::sleep(PROBE_EVERY) => {
                    self.check_running();
                    probes.rss_max_kib = probes.rss_max_kib.max(self.proxy_rss_kib());
                    match self.get(H1_HOST, "/probe").await {
                        Some(200) => probes.ok += 1,
                        other => {
                            eprintln!("conformance: probe during abuse failed: {other:?}");
                            probes.failed += 1;
                        }
                    }
                }
            }
        };
        self.check_running();
        probes.rss_max_kib = probes.rss_max_kib.max(self.proxy_rss_kib());
        (output, probes)
    }
}
