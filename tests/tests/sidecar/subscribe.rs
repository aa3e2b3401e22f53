//! A sidecar subscribes to implicit Services on demand (issue 17): its table holds the
//! Routes users declared, but an implicit Service (served without a Route) only once a
//! captured connection went to its ClusterIP. That connection waits a moment for the
//! set (the controller answers at once) and is balanced; one to a Service the
//! controller does not know yet is passed through to the ClusterIP after the wait, as
//! without Fairway, and the subscription is remembered: once the Service appears, later
//! requests are balanced over its pods. A Service the sidecar never called stays out of
//! its table, and a change to it still moves the sidecar's acked version (an empty
//! delta), so the controller sees no lag.
//!
//! The controller runs in `--static-dir` mode (its real index, store and Discovery
//! stream, fed from YAML this test writes); the proxy is the real binary behind the real
//! nftables rules. Pods are small HTTP servers on `10.244.0.N:8080` naming themselves;
//! a server bound to the ClusterIP stands in for kube-proxy's pick, naming itself
//! `via-clusterip`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::balance::{
    controller_and_captured_proxy, outbound_connections, service_yaml, write_atomically,
};
use super::{IO_LIMIT, in_netns, run};

const ORDERS_IP: &str = "10.96.0.40";
const OTHER_IP: &str = "10.96.0.41";
const PAYMENTS_IP: &str = "10.96.0.43";
const PODS: [&str; 4] = ["10.244.0.1", "10.244.0.2", "10.244.0.3", "10.244.0.4"];
const HOST: &str = "orders.shop.svc.cluster.local:8080";
const PROXY_ID: &str = "sidecar-test";

fn service(name: &str, ip: &str, pods: &[&str]) -> String {
    service_yaml(name, ip, "{fairway.dev/implicit: enabled}", None, pods)
}

/// A declared Route to `billing` (every proxy gets it, sidecar or not).
const BILLING: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: billing, namespace: shop}
spec:
  hosts: [billing.shop]
  rules:
  - backends: [{service: billing, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: billing, namespace: shop}
spec:
  clusterIP: 10.96.0.42
  clusterIPs: [10.96.0.42]
  ports:
  - {name: http, port: 8080, protocol: TCP}
";

/// An HTTP/1.1 server on `addr` answering every request with `name`, keep-alive.
fn http_server(addr: &str, name: &'static str) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            thread::spawn(move || answer(conn, name));
        }
    });
}

fn answer(conn: TcpStream, name: &str) {
    let _ = conn.set_read_timeout(Some(IO_LIMIT));
    let mut writer = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        // A GET without a body: the head ends at the empty line.
        let mut close = false;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => close |= line.eq_ignore_ascii_case("connection: close\r\n"),
            }
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// `GET /` through capture to `ip:8080` with `Host: host`, on a connection of its own:
/// the body (the answering server's name).
fn get(ip: &str, host: &str) -> String {
    let mut conn = TcpStream::connect(format!("{ip}:8080")).expect("connect through capture");
    conn.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
    write!(
        conn,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut conn) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(IO_LIMIT));
    let _ = write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The proxy's table: its routes and endpoint sets, by name (`/debug/routes`).
fn table() -> (Vec<String>, Vec<String>) {
    let body = http_get("127.0.0.1:4191", "/debug/routes");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let names = |list: &str, field: &str| -> Vec<String> {
        (doc[list].as_array().into_iter().flatten())
            .filter_map(|item| item[field].as_str().map(str::to_owned))
            .collect()
    };
    (names("routes", "route"), names("endpoint_sets", "set"))
}

/// A series of the controller's `/metrics`, for this test's proxy.
fn controller_metric(name: &str) -> Option<u64> {
    let series = format!("{name}{{proxy=\"{PROXY_ID}\"}} ");
    http_get("127.0.0.1:19090", "/metrics")
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
}

/// Waits (bounded) until `done` holds; panics with `what` and the logs otherwise.
fn wait_for(what: &str, logs: impl Fn() -> String, done: impl Fn() -> bool) {
    let deadline = Instant::now() + IO_LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", logs());
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sidecar_gets_an_implicit_service_on_its_first_captured_connection() {
    in_netns(
        "subscribe::a_sidecar_gets_an_implicit_service_on_its_first_captured_connection",
        || {
            run(&["ip", "route", "add", "local", "10.244.0.0/16", "dev", "lo"]);
            for (i, ip) in PODS.iter().enumerate() {
                let name: &'static str = ["pod-1", "pod-2", "pod-3", "pod-4"][i];
                http_server(&format!("{ip}:8080"), name);
            }
            http_server(&format!("{ORDERS_IP}:8080"), "via-clusterip");
            http_server(&format!("{PAYMENTS_IP}:8080"), "via-clusterip");
            let dir = tempfile::tempdir().expect("tempdir");
            let statics = dir.path().join("statics");
            std::fs::create_dir(&statics).expect("statics dir");
            let other = statics.join("other.yaml");
            write_atomically(&other, &service("other", OTHER_IP, &PODS[..1]));
            let payments = service("payments", PAYMENTS_IP, &PODS[..1]);
            write_atomically(&statics.join("payments.yaml"), &payments);
            write_atomically(&statics.join("billing.yaml"), BILLING);
            let (_controller, proxy) =
                controller_and_captured_proxy(dir.path(), &statics, &["--id", PROXY_ID]);
            let logs = || {
                format!(
                    "proxy:\n{}\ncontroller:\n{}",
                    proxy.log_text(),
                    std::fs::read_to_string(dir.path().join("controller.log")).unwrap_or_default()
                )
            };

            let (routes, sets) = table();
            assert_eq!(
                (routes.as_slice(), sets.as_slice()),
                (
                    &["shop/billing".to_owned()][..],
                    &["shop/billing:8080".to_owned()][..]
                ),
                "a sidecar starts with the declared Routes only, no implicit Service\n{}",
                logs()
            );
            assert_eq!(
                controller_metric("fairway_controller_proxy_subscriptions"),
                Some(0)
            );

            // A Service the controller knows: the first connection subscribes, waits
            // for the set and is balanced (nothing is pinned to the ClusterIP).
            assert_eq!(
                get(PAYMENTS_IP, "payments.shop:8080"),
                "pod-1",
                "{}",
                logs()
            );
            assert_eq!(outbound_connections("balanced"), 1);

            // One it does not know yet: passed through to the ClusterIP (kube-proxy's
            // job) after the wait, and it works; the subscription is remembered.
            assert_eq!(get(ORDERS_IP, HOST), "via-clusterip");
            assert_eq!(outbound_connections("unknown_pass_through"), 1);
            write_atomically(
                &statics.join("orders.yaml"),
                &service("orders", ORDERS_IP, &PODS),
            );
            wait_for(
                "the Service arrives in the sidecar's table once it exists",
                logs,
                || table().1.contains(&"shop/orders:8080".to_owned()),
            );
            let (routes, _) = table();
            assert_eq!(
                routes,
                ["shop/billing", "shop/orders:8080", "shop/payments:8080"],
                "{}",
                logs()
            );
            assert_eq!(
                controller_metric("fairway_controller_proxy_subscriptions"),
                Some(2)
            );

            // Then every request is balanced over the pods, none through the ClusterIP.
            let mut counts = std::collections::BTreeMap::<String, u32>::new();
            for _ in 0..80 {
                *counts.entry(get(ORDERS_IP, HOST)).or_default() += 1;
            }
            assert!(!counts.contains_key("via-clusterip"), "{counts:?}");
            for pod in ["pod-1", "pod-2", "pod-3", "pod-4"] {
                let share = 100.0 * f64::from(counts.get(pod).copied().unwrap_or(0)) / 80.0;
                assert!(
                    (share - 25.0).abs() <= 5.0,
                    "{pod} got {share}% of 80 requests: {counts:?}"
                );
            }
            assert_eq!(outbound_connections("balanced"), 81);
            assert_eq!(
                outbound_connections("unknown_pass_through"),
                1,
                "the subscription was sent once, for the first connection"
            );

            // A change to a Service the sidecar never called: not in its table, yet its
            // acked version follows (the lag drain and /metrics read goes to 0).
            let lag = || controller_metric("fairway_controller_proxy_lag_versions");
            let version = || {
                http_get("127.0.0.1:19090", "/metrics")
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("fairway_controller_table_version ")?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            wait_for("the sidecar is on the latest version", logs, || {
                lag() == Some(0)
            });
            let before = version();
            write_atomically(&other, &service("other", OTHER_IP, &PODS));
            wait_for("a new version for `other`", logs, || version() > before);
            wait_for(
                "the sidecar acks the version that changed only `other` (an empty delta)",
                logs,
                || lag() == Some(0),
            );
            let (routes, sets) = table();
            assert!(
                !routes.iter().any(|r| r.contains("other"))
                    && !sets.iter().any(|s| s.contains("other")),
                "`other` stays out of the sidecar's table: {routes:?} {sets:?}"
            );
        },
    );
}
