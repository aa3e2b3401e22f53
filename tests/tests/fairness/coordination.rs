//! Coordinated proxies with real processes: proxy A keeps a slow pod busy (16 requests
//! in flight through a round-robin Route), and proxy B, sending one request at a time
//! through a least-request Route over the same pods, sees only idle pods by its own
//! count. The controller answers B's load reports with the requests the other proxies
//! have in flight, and B sends its requests to the pod A leaves free.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::world::{World, get, pod_of, scripted_pod, slice_endpoint};

const ROUTES: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: rr, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [orders.fair]
  rules:
  - backends: [{service: orders, port: 8080}]
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: lr, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [lr.fair]
  loadBalancer: {policy: LeastRequest}
  rules:
  - backends: [{service: orders, port: 8080}]
";

async fn pod(proxy: SocketAddr, host: &str) -> String {
    let answer = get(proxy, host, "/")
        .await
        .unwrap_or_else(|e| panic!("request through {proxy}: {e}"));
    pod_of(&answer)
}

#[tokio::test]
async fn a_proxy_steers_clear_of_the_pod_other_proxies_keep_busy() {
    let mut world = World::start(210, 0, 0).await;
    let _slow = scripted_pod(world.pod_addr(1), "slow", Duration::from_millis(500), "").await;
    let _fast = scripted_pod(world.pod_addr(2), "fast", Duration::ZERO, "").await;
    let ips: Vec<String> = (0..=2).map(|i| world.ip(i)).collect();
    let endpoint = |i: usize, name: &str| slice_endpoint(&ips[i], name, "");
    std::fs::write(world.dir.path().join("static").join("routes.yaml"), ROUTES)
        .unwrap_or_else(|e| panic!("write routes: {e}"));
    world.write_slice(&format!("{}{}", endpoint(1, "slow"), endpoint(2, "fast")));
    let a = world.add_proxy("proxy-a", &[]).await;
    let b = world.add_proxy("proxy-b", &[]).await;
    let (a, b) = (world.proxies[a].listen, world.proxies[b].listen);

    // A: 16 request loops through round robin; the slow pod holds most of them.
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..16)
        .map(|_| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = get(a, "orders.fair", "/").await;
                }
            })
        })
        .collect();

    // B: one request at a time. Its reports (every 2 s) bring back A's load; give
    // them two rounds, then count.
    let warm = Instant::now() + Duration::from_secs(5);
    while Instant::now() < warm {
        pod(b, "lr.fair").await;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..40 {
        *counts.entry(pod(b, "lr.fair").await).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let _ = l.await;
    }
    eprintln!("proxy B, least-request, while A keeps the slow pod busy: {counts:?}");
    assert!(
        counts.get("fast").copied().unwrap_or(0) >= 36,
        "B sends to the pod A leaves free, not half to each: {counts:?}"
    );
}
