//! Server-reported load with real processes: two pods answer with ORCA load reports
//! (`endpoint-load-metrics: TEXT cpu_utilization=..., rps_fractional=...`), one at 80%
//! CPU and one at 20% for the same rate; a real proxy's round robin gives the cheaper
//! pod about four fifths of the requests once the reports are in, where it gives the
//! two pods half each without reports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::world::{World, get, pod_of, scripted_pod, slice_endpoint};

const BUSY: &str = "endpoint-load-metrics: TEXT cpu_utilization=0.8, rps_fractional=100\r\n";
const IDLE: &str = "endpoint-load-metrics: TEXT cpu_utilization=0.2, rps_fractional=100\r\n";

async fn shares(proxy: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let answer = get(proxy, "orders.fair", "/")
            .await
            .unwrap_or_else(|e| panic!("request through the proxy: {e}"));
        *counts.entry(pod_of(&answer)).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn pods_reporting_less_cost_per_request_get_more_requests() {
    let mut world = World::start(200, 0, 0).await;
    let _busy = scripted_pod(world.pod_addr(1), "busy", Duration::ZERO, BUSY).await;
    let _idle = scripted_pod(world.pod_addr(2), "idle", Duration::ZERO, IDLE).await;
    let _plain = scripted_pod(world.pod_addr(3), "plain-1", Duration::ZERO, "").await;
    let _plain = scripted_pod(world.pod_addr(4), "plain-2", Duration::ZERO, "").await;
    let ips: Vec<String> = (0..=4).map(|i| world.ip(i)).collect();
    let endpoint = |i: usize, name: &str| slice_endpoint(&ips[i], name, "");
    // Without reports first: two plain pods, half each.
    world.write_slice(&format!(
        "{}{}",
        endpoint(3, "plain-1"),
        endpoint(4, "plain-2")
    ));
    let proxy = world.add_proxy("proxy-a", &[]).await;
    let proxy = world.proxies[proxy].listen;
    let plain = shares(proxy, 100).await;
    eprintln!("without reports: {plain:?}");
    assert_eq!(plain.values().collect::<Vec<_>>(), [&50, &50], "{plain:?}");

    world.write_slice(&format!("{}{}", endpoint(1, "busy"), endpoint(2, "idle")));
    let mut tries = 0;
    while shares(proxy, 4).await.len() != 2 || shares(proxy, 4).await.contains_key("plain-1") {
        tries += 1;
        assert!(tries < 200, "the proxy never moved to the reporting pods");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Reports are in; weights follow within a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    shares(proxy, 4).await;
    let weighted = shares(proxy, 400).await;
    eprintln!("with reports (80% vs 20% CPU at the same rate): {weighted:?}");
    let idle = weighted.get("idle").copied().unwrap_or(0);
    assert!(
        (300..=340).contains(&idle),
        "the pod at a quarter of the cost takes about 80%: {weighted:?}"
    );
}
