//! Long streams on a terminating pod (issue 19, item 2): a real `fairway-proxy` following
//! a controller that watches the real apiserver, two grpcio pods (`tests/grpc/peer.py`),
//! and grpcio's own client holding a server stream open through the proxy while the
//! test marks its pod terminating in the EndpointSlice. The stream runs on for the
//! Route's `drainTimeout`, then ends with `UNAVAILABLE` (not a reset, not the pod's exit),
//! the client's retry lands on the other pod, and the terminating pod's connections close.
//!
//! The apiserver refuses loopback addresses in EndpointSlices, so the pods listen on this
//! machine's own address (the one it would reach the network from), each on its own
//! port: one slice per pod, as named target ports give pods different port numbers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fairway_controller::crd::UpstreamProtocol;
use fairway_tests::bins::{binary, free_port, has_flag, loopback};
use fairway_tests::gobuild::target_dir;
use fairway_tests::objects::{State, endpoint, route, service, slice};
use fairway_tests::process::Managed;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::{Setup, WAIT};

const SERVICE: &str = "streams";
const HOST: &str = "streams.test";
pub const PODS: [&str; 2] = ["pod-1", "pod-2"];

/// This machine's non-loopback address: the source of a route out (a UDP `connect`
/// sends nothing). A machine without one cannot run this test, and says so.
pub fn local_ip() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    socket
        .connect("192.0.2.1:9")
        .and_then(|()| socket.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .unwrap_or_else(|| {
            panic!("this test needs a non-loopback IPv4 address with a route out (none here)")
        })
}

/// The venv's Python with grpcio (tests/run.sh installs it).
fn python() -> PathBuf {
    target_dir().join("tools/venv/bin/python3")
}

fn peer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc/peer.py")
}

/// Pod `i`'s slice, listing it at `ip:port`, `terminating` or ready.
pub fn pod_slice(ns: &str, i: usize, ip: &str, port: u16, terminating: bool) -> EndpointSlice {
    let state = if terminating {
        State::Terminating
    } else {
        State::Ready
    };
    let name = format!("{SERVICE}-{}", i + 1);
    slice(
        ns,
        &name,
        SERVICE,
        "grpc",
        i32::from(port),
        vec![endpoint(ip, state)],
    )
}

/// The proxy's `/metrics`.
pub async fn metrics(admin: std::net::SocketAddr) -> String {
    let mut stream = (TcpStream::connect(admin).await)
        .unwrap_or_else(|e| panic!("connect to the proxy's admin port: {e}"));
    let request = b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    (stream.write_all(request).await).unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    let mut text = String::new();
    (tokio::time::timeout(WAIT, stream.read_to_string(&mut text)).await)
        .unwrap_or_else(|_| panic!("/metrics took over {WAIT:?}"))
        .unwrap_or_else(|e| panic!("read /metrics: {e}"));
    text
}

/// Connections pooled to `addr`, idle and busy, from `metrics`.
pub fn pooled(metrics: &str, addr: &str) -> u64 {
    (metrics.lines())
        .filter(|l| l.starts_with("fairway_proxy_pool_connections{"))
        .filter(|l| l.contains(&format!("endpoint=\"{addr}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A real `fairway-proxy` following `controller`, killed on drop.
pub struct Proxy {
    _process: Managed,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Proxy {
    pub fn start(setup: &Setup, controller: &str) -> Proxy {
        let (listen, admin) = (loopback(free_port()), loopback(free_port()));
        let proxy_bin = binary("fairway-proxy");
        let mut args = vec![
            format!("--controller={controller}"),
            format!("--listen={listen}"),
            format!("--admin-addr={admin}"),
            "--id=streams".to_owned(),
            "--node=local".to_owned(),
            "--log-format=text".to_owned(),
        ];
        if has_flag(&proxy_bin, "--controller-plaintext") {
            args.push("--controller-plaintext".to_owned());
        }
        let log = setup.dir.path().join("proxy.log");
        let process = Managed::spawn_with_env(
            "fairway-proxy",
            &proxy_bin,
            &args,
            &[("RUST_LOG".to_owned(), "info,fairway_proxy=debug".to_owned())],
            log.clone(),
        )
        .unwrap_or_else(|e| panic!("start the proxy: {e}"));
        Proxy {
            _process: process,
            listen,
            admin,
            log,
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Marks pod `i`'s endpoint terminating in its slice, as the EndpointSlice controller
/// does when the pod is deleted.
pub async fn terminate(setup: &Setup, i: usize, ip: &str, port: u16) {
    let slices: Api<EndpointSlice> = Api::namespaced(setup.client.clone(), &setup.ns);
    let terminating = pod_slice(&setup.ns, i, ip, port, true);
    let name = terminating.metadata.name.clone().unwrap_or_default();
    let patch = Patch::Apply(terminating);
    (slices
        .patch(&name, &PatchParams::apply("drain-test").force(), &patch)
        .await)
        .unwrap_or_else(|e| panic!("mark pod {i} terminating: {e}"));
}

type ClientLines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The client's next JSON line.
async fn next(lines: &mut ClientLines, proxy_log: &Path) -> serde_json::Value {
    let line = tokio::time::timeout(WAIT, lines.next_line()).await;
    let line = line.unwrap_or_else(|_| panic!("the client said nothing for {WAIT:?}"));
    let line = line.unwrap_or_else(|e| panic!("read the client: {e}"));
    let line = line.unwrap_or_else(|| {
        let log = std::fs::read_to_string(proxy_log).unwrap_or_default();
        panic!("the client ended early; proxy log:\n{log}")
    });
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("client line {line:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_stream_to_a_terminating_pod_ends_unavailable_after_the_drain_timeout() {
    let setup = Setup::new("drain-streams").await;
    let ns = setup.ns.clone();
    let ip = local_ip().to_string();
    let ports = [free_port(), free_port()];
    let mut pods = Vec::new();
    for (i, name) in PODS.iter().enumerate() {
        let args = [
            peer().display().to_string(),
            "serve".to_owned(),
            (*name).to_owned(),
            ip.clone(),
            ports[i].to_string(),
        ];
        let log = setup.dir.path().join(format!("{name}.log"));
        pods.push(
            Managed::spawn("grpc pod", &python(), &args, log)
                .unwrap_or_else(|e| panic!("start {name}: {e}")),
        );
        setup.create(&pod_slice(&ns, i, &ip, ports[i], false)).await;
    }
    setup.create(&service(&ns, SERVICE, "grpc", 8080)).await;
    let mut streams = route(&ns, SERVICE, &[HOST], SERVICE, 8080);
    streams.spec.upstream.protocol = UpstreamProtocol::Http2;
    streams.spec.upstream.drain_timeout = "2s".to_owned();
    setup.create(&streams).await;
    let controller = setup.controller().await;

    let proxy = Proxy::start(&setup, &controller.endpoint);
    let (listen, admin) = (proxy.listen, proxy.admin);
    let log_tail = || proxy.log_tail();

    // Routable: a unary call through the proxy answers (pods and table both up).
    let until = Instant::now() + WAIT;
    loop {
        let out = tokio::process::Command::new(python())
            .arg(peer())
            .args(["call", &listen.to_string(), HOST, "Stats", "{}", "5"])
            .output()
            .await
            .unwrap_or_else(|e| panic!("run peer.py: {e}"));
        if String::from_utf8_lossy(&out.stdout).contains("\"OK\"") {
            break;
        }
        assert!(
            Instant::now() < until,
            "{HOST} routable within {WAIT:?}:\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A stream of 10 minutes' worth of messages: only the drain can end it in time.
    let mut client = tokio::process::Command::new(python())
        .arg(peer())
        .args([
            "drained",
            &listen.to_string(),
            HOST,
            r#"{"n": 6000, "ms": 100}"#,
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start the streaming client: {e}"));
    let stdout = client.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = next(&mut lines, &proxy.log).await;
    let pinned = first["first"]
        .as_str()
        .expect("the first message names its pod")
        .to_owned();
    let index = PODS
        .iter()
        .position(|p| *p == pinned)
        .expect("one of the pods");
    let pinned_addr = format!("{ip}:{}", ports[index]);

    terminate(&setup, index, &ip, ports[index]).await;

    let out = next(&mut lines, &proxy.log).await;
    assert_eq!(
        out["code"],
        "UNAVAILABLE",
        "the stream to the terminating {pinned} ends with UNAVAILABLE, which clients \
         retry: {out}\n{}",
        log_tail()
    );
    assert_eq!(
        out["trailers"]["fairway-error"], "Drained",
        "the proxy ended it for the drain (not a broken pod stream): {out}"
    );
    assert!(
        out["messages"].as_u64().unwrap_or(0) > 1,
        "the stream ran on after the pod turned terminating: {out}"
    );
    assert_eq!(out["retry"]["code"], "OK", "the retry is answered: {out}");
    assert!(
        out["retry"]["pod"].as_str().is_some_and(|p| p != pinned),
        "the client's retry lands on the other pod, not the terminating {pinned}: {out}"
    );

    // Nothing is in flight to the terminating pod any more: its connection closes
    // (within a reap interval or two; bounded).
    let until = Instant::now() + WAIT;
    loop {
        let text = metrics(admin).await;
        if pooled(&text, &pinned_addr) == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the terminating pod's idle connection closes: {}",
            text.lines()
                .filter(|l| l.contains("pool_connections"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = metrics(admin).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("fairway_proxy_grpc_calls_total{")
                && l.contains(&format!("endpoint=\"{pinned_addr}\""))
                && l.contains("grpc_status=\"UNAVAILABLE\"")),
        "the drained call counts as UNAVAILABLE for {pinned_addr}"
    );
    drop(pods);
    controller.stop().await;
}
