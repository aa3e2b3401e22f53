//! Request-level balancing through the real proxy: a scale-up under keep-alive load
//! spreads evenly at once, and backend weights are honoured.

mod support;

use std::collections::HashMap;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_from_one_to_four_pods_spreads_requests_evenly() {
    let pods = [
        Pod::start("p1", "127.0.0.21").await,
        Pod::start("p2", "127.0.0.22").await,
        Pod::start("p3", "127.0.0.23").await,
        Pod::start("p4", "127.0.0.24").await,
    ];
    let routes = || vec![route("orders", &["orders.shop"], &[("orders", 1)])];
    let mut proxy = Proxy::start(table(routes(), vec![set("orders", &[pods[0].addr])])).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..50 {
        assert_eq!(pod_of(&client.get("orders.shop", "/").await), "p1");
    }

    let addrs: Vec<_> = pods.iter().map(|p| p.addr).collect();
    proxy.update(table(routes(), vec![set("orders", &addrs)]));
    // The same keep-alive client connection: a ClusterIP pool would stay on p1 here.
    const AFTER: usize = 400;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..AFTER {
        let answer = client.get("orders.shop", "/").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        *counts.entry(pod_of(&answer).to_owned()).or_default() += 1;
    }
    // 25% each, ± 5 points (round robin is exact; the slack is for the switch-over).
    for pod in ["p1", "p2", "p3", "p4"] {
        let n = counts.get(pod).copied().unwrap_or(0);
        assert!(
            (80..=120).contains(&n),
            "{pod} got {n} of {AFTER} requests after the scale-up, expected 100 ± 20: {counts:?}"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_weights_ninety_ten_are_honoured() {
    let stable = Pod::start("stable", "127.0.0.25").await;
    let canary = Pod::start("canary", "127.0.0.26").await;
    let proxy = Proxy::start(table(
        vec![route(
            "orders",
            &["orders.shop"],
            &[("stable", 90), ("canary", 10)],
        )],
        vec![set("stable", &[stable.addr]), set("canary", &[canary.addr])],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    const N: usize = 1000;
    let mut to_canary = 0;
    for _ in 0..N {
        let answer = client.get("orders.shop", "/").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        if pod_of(&answer) == "canary" {
            to_canary += 1;
        }
    }
    // Binomial(1000, 0.1): sd ≈ 9.5; ± 40 is more than 4 sd.
    assert!(
        (60..=140).contains(&to_canary),
        "canary got {to_canary} of {N}, expected 10% (100 ± 40)"
    );
    proxy.stop().await;
}
