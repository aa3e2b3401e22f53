//! The `Prequal` policy with real processes: four identical pods get about a quarter
//! of the requests each, and when one of them is replaced by a pod that answers 8x
//! slower, that pod gets far less than a quarter (round robin would give it one).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::world::{World, get, pod_of, scripted_pod, slice_endpoint};

const ROUTES: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: orders, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [orders.fair]
  loadBalancer: {policy: Prequal}
  rules:
  - backends: [{service: orders, port: 8080}]
";

/// `clients` concurrent clients, `each` requests one after another: answers per pod.
async fn shares(proxy: SocketAddr, clients: usize, each: usize) -> BTreeMap<String, usize> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(async move {
                let mut pods = Vec::with_capacity(each);
                for _ in 0..each {
                    let answer = get(proxy, "orders.fair", "/")
                        .await
                        .unwrap_or_else(|e| panic!("request through the proxy: {e}"));
                    pods.push(pod_of(&answer));
                }
                pods
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for task in tasks {
        for pod in task.await.unwrap_or_else(|e| panic!("client task: {e}")) {
            *counts.entry(pod).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test]
async fn identical_pods_share_evenly_and_a_slow_pod_gets_less() {
    let mut world = World::start_with(220, 0, 0, ROUTES).await;
    let names = ["pod-1", "pod-2", "pod-3", "pod-4"];
    let mut pods = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        pods.push(scripted_pod(world.pod_addr(i + 1), name, Duration::from_millis(5), "").await);
    }
    pods.push(scripted_pod(world.pod_addr(5), "slow", Duration::from_millis(40), "").await);
    let ips: Vec<String> = (0..=5).map(|i| world.ip(i)).collect();
    let endpoint = |i: usize, name: &str| slice_endpoint(&ips[i], name, "");
    let listed = |ns: &[usize]| -> String {
        ns.iter()
            .map(|&i| endpoint(i, if i == 5 { "slow" } else { names[i - 1] }))
            .collect()
    };
    world.write_slice(&listed(&[1, 2, 3, 4]));
    let proxy = world.add_proxy("proxy-a", &[]).await;
    let proxy = world.proxies[proxy].listen;
    let mut tries = 0;
    while shares(proxy, 1, 8).await.len() < 4 {
        tries += 1;
        assert!(tries < 200, "the proxy never listed four pods");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Four clients, 100 requests each: a quarter is 100, and two choices among equals
    // are random, so allow four standard deviations (about 9 each).
    let even = shares(proxy, 4, 100).await;
    eprintln!("identical pods: {even:?}");
    assert_eq!(even.len(), 4, "{even:?}");
    for (pod, n) in &even {
        assert!((65..=135).contains(n), "{pod} took {n} of 400: {even:?}");
    }

    world.write_slice(&listed(&[1, 2, 3, 5]));
    let mut tries = 0;
    while !shares(proxy, 1, 8).await.contains_key("slow") {
        tries += 1;
        assert!(tries < 200, "the proxy never moved to the slow pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let uneven = shares(proxy, 4, 100).await;
    eprintln!("pod-4 replaced by a pod 8x slower: {uneven:?}");
    let slow = uneven.get("slow").copied().unwrap_or(0);
    assert!(
        slow < 50,
        "the slow pod takes under half a quarter: {uneven:?}"
    );
}
