//! Spillover with real processes: node hints (`hints.forNodes`, as `trafficDistribution:
//! PreferSameNode` writes them) keep a proxy on `--node=local` on its node's pod, a slow
//! one; a burst of concurrent requests spills to the other node's pod once the local one
//! has the Route's `maxInFlight`, and the proxy comes back to its node when it is quiet.
//! A Route without `spillover` keeps every request local under the same burst.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::world::{World, get, pod_of, scripted_pod, slice_endpoint};
const ROUTES: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: spill, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [spill.fair]
  loadBalancer: {spillover: {maxInFlight: 2}}
  rules:
  - backends: [{service: orders, port: 8080}]
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: orders, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [orders.fair]
  rules:
  - backends: [{service: orders, port: 8080}]
";

/// How long the local pod takes per request: long enough for a burst to pile up.
const SLOW: Duration = Duration::from_millis(300);

/// `n` requests for `host` at once, each on its own connection; answers per pod.
async fn burst(proxy: SocketAddr, host: &str, n: usize) -> BTreeMap<String, usize> {
    let requests = (0..n).map(|_| {
        let host = host.to_owned();
        tokio::spawn(async move { get(proxy, &host, "/").await })
    });
    let mut counts = BTreeMap::new();
    for request in requests.collect::<Vec<_>>() {
        let answer = request
            .await
            .unwrap_or_else(|e| panic!("request task: {e}"))
            .unwrap_or_else(|e| panic!("request through the proxy: {e}"));
        *counts.entry(pod_of(&answer)).or_insert(0) += 1;
    }
    counts
}

/// `n` requests one after the other; answers per pod.
async fn one_by_one(proxy: SocketAddr, host: &str, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let answer = get(proxy, host, "/")
            .await
            .unwrap_or_else(|e| panic!("request through the proxy: {e}"));
        *counts.entry(pod_of(&answer)).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_busy_node_spills_to_other_nodes_and_comes_back() {
    // pod-1 (instant) is on another node; the slow pod beside it is on ours.
    let mut world = World::start_with(190, 1, 1, ROUTES).await;
    let local_ip = world.ip(2);
    let _slow = scripted_pod(world.pod_addr(2), "local", SLOW, "").await;
    let endpoint = |ip: &str, name: &str, node: &str| {
        let hints = format!("  nodeName: {node}\n  hints: {{forNodes: [{{name: {node}}}]}}\n");
        slice_endpoint(ip, name, &hints)
    };
    let remote_ip = world.ip(1);
    world.write_slice(&format!(
        "{}{}",
        endpoint(&remote_ip, "pod-1", "other"),
        endpoint(&local_ip, "local", "local")
    ));
    let proxy = world.add_proxy("proxy-a", &[]).await;
    let proxy = world.proxies[proxy].listen;
    // Once the hints are in, the proxy keeps to its node's pod.
    let mut tries = 0;
    while one_by_one(proxy, "orders.fair", 2)
        .await
        .keys()
        .ne(["local"])
    {
        tries += 1;
        assert!(tries < 100, "the proxy never kept to its node's pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(
        one_by_one(proxy, "spill.fair", 3)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["local"],
        "quiet: the node's own pod"
    );
    let spilled = burst(proxy, "spill.fair", 12).await;
    eprintln!("a burst of 12 with maxInFlight 2: {spilled:?}");
    assert!(
        spilled.get("pod-1").is_some_and(|&n| n >= 4),
        "past 2 in flight locally, requests spread to the other node: {spilled:?}"
    );
    assert!(spilled.contains_key("local"), "{spilled:?}");
    assert_eq!(
        one_by_one(proxy, "spill.fair", 3)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["local"],
        "quiet again: back on the node"
    );

    let kept = burst(proxy, "orders.fair", 12).await;
    eprintln!("a burst of 12 without spillover: {kept:?}");
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        ["local"],
        "no spillover option: the node's pod takes the whole burst"
    );
}
