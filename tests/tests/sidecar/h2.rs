//! HTTP/2 with prior knowledge through capture: an h2c client (one connection, many
//! streams, as a gRPC channel keeps) dials a Service's ClusterIP and each request is
//! balanced over the Service's pods; an HTTP/2 connection whose `:authority` no Route of
//! that Service claims is passed through to where it was going and answered there, never
//! with a `404`.
//!
//! The pods are the node tests' Go backend (HTTP/1.1 and h2c on one port), their
//! EndpointSlice port saying `appProtocol: kubernetes.io/h2c`, so the proxy speaks h2c to
//! them too. A backend bound to the ClusterIP itself stands in for the pod kube-proxy
//! would have picked for a passed-through connection.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::balance::{
    Killed, controller_and_captured_proxy, go_binaries, outbound_connections, service_yaml, spawn,
    spawn_pods, write_atomically,
};
use super::{IO_LIMIT, in_netns, run};

const CLUSTER_IP: &str = "10.96.0.40";
const HOST: &str = "orders.shop.svc.cluster.local:8080";
const PODS: [&str; 4] = ["10.244.0.41", "10.244.0.42", "10.244.0.43", "10.244.0.44"];
/// Requests on the one balanced connection, 8 in flight at a time.
const REQUESTS: usize = 400;
const IN_FLIGHT: usize = 8;
/// The design's tolerance for a pod's share, in percentage points.
const TOLERANCE: f64 = 2.0;

fn statics() -> String {
    let labels = "{fairway.dev/implicit: enabled}";
    service_yaml(
        "orders",
        CLUSTER_IP,
        labels,
        Some("kubernetes.io/h2c"),
        &PODS,
    )
}

/// `count` GETs with `authority` on one h2c connection to the ClusterIP: which pod
/// answered each, and how many failed.
async fn h2c_requests(authority: &str, count: usize) -> (BTreeMap<String, usize>, usize) {
    let tcp = tokio::net::TcpStream::connect(format!("{CLUSTER_IP}:8080"))
        .await
        .expect("connect to the ClusterIP");
    let (send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut answered = BTreeMap::new();
    let mut failed = 0;
    for _ in 0..count / IN_FLIGHT {
        let calls = (0..IN_FLIGHT).map(|_| {
            let mut send = send.clone();
            let request = http::Request::get(format!("http://{authority}/"))
                .body(Empty::new())
                .expect("request");
            async move {
                let response = send.send_request(request).await.ok()?;
                let ok = response.status().is_success();
                let body = response.into_body().collect().await.ok()?.to_bytes();
                ok.then(|| String::from_utf8_lossy(&body).into_owned())
            }
        });
        for answer in futures::future::join_all(calls).await {
            match answer {
                Some(pod) => *answered.entry(pod).or_default() += 1,
                None => failed += 1,
            }
        }
    }
    (answered, failed)
}

#[test]
fn an_h2c_connection_is_balanced_per_request_and_an_unclaimed_one_passes_through() {
    let go = if std::env::var("FAIRWAY_SIDECAR_NETNS").is_ok() {
        fairway_tests::gobuild::target_dir().join("sidecar-go")
    } else {
        go_binaries()
    };
    in_netns(
        "h2::an_h2c_connection_is_balanced_per_request_and_an_unclaimed_one_passes_through",
        || {
            run(&["ip", "route", "add", "local", "10.244.0.0/16", "dev", "lo"]);
            let dir = tempfile::tempdir().expect("tempdir");
            let mut backends: Vec<Killed> = spawn_pods(&go, dir.path(), &PODS);
            let listen = format!("{CLUSTER_IP}:8080");
            let log = dir.path().join("kube-proxy-pick.log");
            let pick = [("POD_NAME", "kube-proxy-pick")];
            backends.push(spawn(
                &go.join("backend"),
                &["-listen", &listen],
                &pick,
                &log,
            ));
            let statics_dir = dir.path().join("statics");
            std::fs::create_dir(&statics_dir).expect("statics dir");
            write_atomically(&statics_dir.join("orders.yaml"), &statics());
            let (_controller, proxy) = controller_and_captured_proxy(dir.path(), &statics_dir, &[]);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");

            let (answered, failed) = runtime.block_on(async {
                tokio::time::timeout(IO_LIMIT, h2c_requests(HOST, REQUESTS))
                    .await
                    .expect("the requests within the time limit")
            });
            assert_eq!(
                failed,
                0,
                "no request fails: {answered:?}\n{}",
                proxy.log_text()
            );
            assert_eq!(outbound_connections("balanced"), 1, "{}", proxy.log_text());
            eprintln!("requests per pod on one h2c connection: {answered:?}");
            for pod in ["pod-1", "pod-2", "pod-3", "pod-4"] {
                let share =
                    100.0 * answered.get(pod).copied().unwrap_or(0) as f64 / REQUESTS as f64;
                assert!(
                    (share - 25.0).abs() <= TOLERANCE,
                    "{pod} got {share:.1}% of one connection's {REQUESTS} requests, not 25% ± {TOLERANCE}: {answered:?}"
                );
            }

            // An authority no Route of the Service claims: where it was going, unchanged.
            let (answered, failed) = runtime.block_on(async {
                tokio::time::timeout(IO_LIMIT, h2c_requests("unclaimed.example:8080", IN_FLIGHT))
                    .await
                    .expect("the requests within the time limit")
            });
            assert_eq!(failed, 0, "{answered:?}\n{}", proxy.log_text());
            assert_eq!(
                answered,
                BTreeMap::from([("kube-proxy-pick".to_owned(), IN_FLIGHT)]),
                "passed through to the original destination"
            );
            assert_eq!(outbound_connections("detected_pass_through"), 1);
        },
    );
}
