//! The seed's gateway, unchanged, through capture: a fasthttp client calling
//! `orders.shop.svc.cluster.local:8080` (resolved by the namespace's own `/etc/hosts` to
//! the Service's ClusterIP) keeps its keep-alive connections, and after the Service
//! scales 1 -> 4 every pod gets its share of the requests that follow.
//!
//! The controller runs in `--static-dir` mode on YAML this test writes (Route, Service
//! with its ClusterIP, EndpointSlice); the scale-up is a rewrite of the slice file, as
//! kube-controller-manager would update it. Pods are the node tests' Go backend on
//! `10.244.0.N:8080`, local on `lo`. Nothing listens on the ClusterIP itself, so a request
//! that was not balanced by the proxy (passed through) fails and is counted as failed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use fairway_tests::bins;

use super::{IO_LIMIT, Proxy, capture, in_netns, run};

const CLUSTER_IP: &str = "10.96.0.10";
const HOST: &str = "orders.shop.svc.cluster.local";
const PODS: [&str; 4] = ["10.244.0.1", "10.244.0.2", "10.244.0.3", "10.244.0.4"];
pub(crate) const CONTROLLER_GRPC: &str = "127.0.0.1:18000";
/// Seconds of load before the scale-up, and in all (the gateway's `-duration`).
const BEFORE_SCALE_S: usize = 3;
const LOAD_S: u64 = 14;
/// Seconds after every pod has answered that are left out: the proxies' pools and the
/// balancer's round-robin settle onto the new pods (design.md 7: within 1 s).
const SETTLE_S: usize = 1;
/// The design's tolerance for a pod's share, in percentage points.
const TOLERANCE: f64 = 2.0;

/// The seed's gateway and the Go backend, built once from `tests/node/images`
/// (outside the namespace: building may need the module cache filled from the network).
pub(crate) fn go_binaries() -> PathBuf {
    // Once per process: the tests run in parallel, and two builds writing the same
    // binaries at once could leave one half-written.
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_go_binaries).clone()
}

fn build_go_binaries() -> PathBuf {
    let out = fairway_tests::gobuild::target_dir().join("sidecar-go");
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/images");
    std::fs::create_dir_all(&out).expect("create the Go output directory");
    // A trailing separator: `go build -o DIR/` writes one binary per package there.
    let mut dir = out.clone().into_os_string();
    dir.push("/");
    let built = Command::new("go")
        .current_dir(&module)
        .args(["build", "-trimpath", "-o"])
        .arg(&dir)
        .args(["./cmd/gateway", "./cmd/backend"])
        .output()
        .unwrap_or_else(|e| panic!("run go (install Go 1.26, as ./tests/run.sh expects): {e}"));
    assert!(
        built.status.success(),
        "go build in {} failed (./tests/run.sh downloads its modules first):\n{}",
        module.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// A child process killed (and reaped) when dropped.
pub(crate) struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn spawn(program: &Path, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Killed {
    let out = std::fs::File::create(log).expect("log file");
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out);
    fairway_tests::process::die_with_parent(&mut command);
    Killed(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display())),
    )
}

/// How the Service is served: by a Route naming it, or without one (implicit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    ByRoute,
    Implicitly,
}

fn statics(pods: &[&str], served: Served) -> String {
    let (route, labels) = match served {
        Served::ByRoute => (
            format!(
                "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: orders, namespace: shop}}
spec:
  hosts: [{HOST}, orders.shop]
  rules:
  - backends: [{{service: orders, port: 8080}}]
---
"
            ),
            "{}",
        ),
        Served::Implicitly => (String::new(), "{fairway.dev/implicit: enabled}"),
    };
    let service = service_yaml("orders", CLUSTER_IP, labels, None, pods);
    format!("{route}{service}")
}

/// A Service with one port, 8080 (`h2c` with `app_protocol`, else `http`), and its
/// EndpointSlice of ready `pods`, for the controller's static directory. `labels` is
/// the Service's label map in flow style (`{}` for none).
pub(crate) fn service_yaml(
    name: &str,
    cluster_ip: &str,
    labels: &str,
    app_protocol: Option<&str>,
    pods: &[&str],
) -> String {
    let endpoints: String = pods
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true, serving: true, terminating: false}}\n"))
        .collect();
    let (port, protocol) = match app_protocol {
        Some(protocol) => ("h2c", format!(", appProtocol: {protocol}")),
        None => ("http", String::new()),
    };
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop, labels: {labels}}}
spec:
  clusterIP: {cluster_ip}
  clusterIPs: [{cluster_ip}]
  ports:
  - {{name: {port}, port: 8080, targetPort: 8080, protocol: TCP{protocol}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-{port}, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports:
- {{name: {port}, port: 8080, protocol: TCP{protocol}}}
endpoints:
{endpoints}"
    )
}

/// One Go backend per address in `ips`, on port 8080, answering as `pod-N` (N from 1);
/// logs in `dir`.
pub(crate) fn spawn_pods(go: &Path, dir: &Path, ips: &[&str]) -> Vec<Killed> {
    (ips.iter().enumerate())
        .map(|(i, ip)| {
            let name = format!("pod-{}", i + 1);
            let listen = format!("{ip}:8080");
            let log = dir.join(format!("{name}.log"));
            spawn(
                &go.join("backend"),
                &["-listen", &listen],
                &[("POD_NAME", &name)],
                &log,
            )
        })
        .collect()
}

/// Writes `text` to `path` in one rename, so the controller never reads half a file.
pub(crate) fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write statics");
    std::fs::rename(&tmp, path).expect("rename statics");
}

/// `GET path` on the proxy's admin port: the whole answer, head and body.
fn admin_get(path: &str) -> String {
    let Ok(mut conn) = TcpStream::connect("127.0.0.1:4191") else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(IO_LIMIT));
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    let _ = conn.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

/// The controller on `statics_dir` (its log in `dir`), the capture rules, and the
/// proxy of namespace `shop`, once it has a table. The controller dies with its guard.
pub(crate) fn controller_and_captured_proxy(
    dir: &Path,
    statics_dir: &Path,
    proxy_args: &[&str],
) -> (Killed, Proxy) {
    let controller_log = dir.join("controller.log");
    let controller = spawn(
        &bins::binary("fairway-controller"),
        &[
            &format!("--static-dir={}", statics_dir.display()),
            &format!("--grpc-addr={CONTROLLER_GRPC}"),
            "--admin-addr=127.0.0.1:19090",
            "--no-auth",
            "--log-format=text",
        ],
        &[],
        &controller_log,
    );
    capture("install");
    let url = format!("http://{CONTROLLER_GRPC}");
    let mut args = vec!["--controller", &url, "--namespace", "shop"];
    args.extend(proxy_args);
    let proxy = Proxy::start_with(&args);
    let deadline = Instant::now() + IO_LIMIT;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "the proxy got no table:\n{}\ncontroller:\n{}",
            proxy.log_text(),
            std::fs::read_to_string(&controller_log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
    (controller, proxy)
}

/// Whether `GET /ready` on the proxy's admin port answers 200 (a first table applied).
pub(crate) fn ready() -> bool {
    admin_get("/ready").starts_with("HTTP/1.1 200")
}

/// How many captured connections the proxy counted with `outcome`.
pub(crate) fn outbound_connections(outcome: &str) -> u64 {
    let series = format!("fairway_proxy_outbound_connections_total{{outcome=\"{outcome}\"}} ");
    admin_get("/metrics")
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// One second of the gateway's output (its JSON line).
#[derive(Debug, serde::Deserialize)]
struct Second {
    counts: BTreeMap<String, u64>,
    failed: u64,
}

#[test]
fn the_seeds_gateway_is_balanced_per_request_after_a_scale_up() {
    let name = "balance::the_seeds_gateway_is_balanced_per_request_after_a_scale_up";
    gateway_through_capture(name, Served::ByRoute, HOST);
}

/// The promise: no Route at all (the Service opted in with
/// `fairway.dev/implicit: enabled`, as `--implicit-services` does for every Service).
#[test]
fn a_service_without_a_route_is_balanced_too() {
    let name = "balance::a_service_without_a_route_is_balanced_too";
    gateway_through_capture(name, Served::Implicitly, HOST);
}

/// The bare name, as a client in the Service's own namespace often dials it: the
/// sidecar (told its namespace, as the injector does) resolves `orders:8080` to
/// `orders.shop:8080`, the implicit Route's name.
#[test]
fn a_bare_service_name_is_balanced_in_the_sidecars_namespace() {
    let name = "balance::a_bare_service_name_is_balanced_in_the_sidecars_namespace";
    gateway_through_capture(name, Served::Implicitly, "orders");
}

fn gateway_through_capture(name: &str, served: Served, host: &str) {
    let go = if std::env::var("FAIRWAY_SIDECAR_NETNS").is_ok() {
        fairway_tests::gobuild::target_dir().join("sidecar-go")
    } else {
        go_binaries()
    };
    in_netns(name, || {
        run(&["ip", "route", "add", "local", "10.244.0.0/16", "dev", "lo"]);
        let dir = tempfile::tempdir().expect("tempdir");
        // The namespace's own name resolution, as cluster DNS would answer.
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n{CLUSTER_IP} {host}\n"),
        )
        .expect("hosts");
        run(&[
            "mount",
            "--bind",
            hosts.to_str().expect("utf-8"),
            "/etc/hosts",
        ]);

        let _pods = spawn_pods(&go, dir.path(), &PODS);
        let statics_dir = dir.path().join("statics");
        std::fs::create_dir(&statics_dir).expect("statics dir");
        let objects = statics_dir.join("orders.yaml");
        write_atomically(&objects, &statics(&PODS[..1], served));
        let (_controller, proxy) = controller_and_captured_proxy(dir.path(), &statics_dir, &[]);
        // The seed's gateway, unchanged: it dials the Service's name, as in production.
        let mut gateway = Killed(
            Command::new(go.join("gateway"))
                .args([
                    "-url",
                    &format!("http://{host}:8080/"),
                    "-rate",
                    "400",
                    "-workers",
                    "8",
                ])
                .args(["-duration", &format!("{LOAD_S}s")])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the gateway"),
        );
        let stdout = gateway.0.stdout.take().expect("stdout");
        let mut seconds = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("gateway output");
            let second: Second =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            seconds.push(second);
            if seconds.len() == BEFORE_SCALE_S {
                // kubectl scale 1 -> 4, as the EndpointSlice controller would write it.
                write_atomically(&objects, &statics(&PODS, served));
            }
        }
        let status = gateway.0.wait().expect("gateway exit");
        assert!(status.success(), "the gateway failed: {status}");

        assert!(
            outbound_connections("balanced") > 0,
            "the gateway's connections were balanced"
        );
        // An implicit Service's first connections waited for the set their subscription
        // brought (nothing listens on the ClusterIP: one passed through would fail).
        assert_eq!(outbound_connections("unknown_pass_through"), 0);
        let failed: u64 = seconds.iter().map(|s| s.failed).sum();
        assert_eq!(
            failed,
            0,
            "no request fails through capture; per second: {seconds:?}\n{}",
            proxy.log_text()
        );
        let all_seen = seconds
            .iter()
            .position(|s| s.counts.len() == PODS.len())
            .unwrap_or_else(|| panic!("every pod answers after the scale-up: {seconds:?}"));
        let later = &seconds[all_seen + 1 + SETTLE_S..];
        assert!(
            later.len() >= 5,
            "enough seconds after the scale-up to judge: {seconds:?}"
        );
        let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
        for second in later {
            for (pod, n) in &second.counts {
                *totals.entry(pod.as_str()).or_default() += n;
            }
        }
        let sum: u64 = totals.values().sum();
        eprintln!(
            "requests per pod over {} s after the scale-up: {totals:?}",
            later.len()
        );
        for pod in ["pod-1", "pod-2", "pod-3", "pod-4"] {
            let share = 100.0 * totals.get(pod).copied().unwrap_or(0) as f64 / sum as f64;
            assert!(
                (share - 25.0).abs() <= TOLERANCE,
                "{pod} got {share:.1}% of {sum} requests after the scale-up, not 25% ± {TOLERANCE}: {totals:?}"
            );
        }
    });
}
