//! Scenario 9: topology hints as kube-proxy applies them. The EndpointSlice carries
//! `hints.forNodes` (what the EndpointSlice controller writes for `trafficDistribution:
//! PreferSameNode`) and `hints.forZones`; each proxy (`--node=node-proxy-a`, `-b`, both
//! `--zone=zone-a`) keeps its traffic on the pod hinted for its node, and falls back to
//! zone hints when not every endpoint has node hints.

use std::collections::BTreeMap;

use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint, route};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, ForNode, ForZone};

use crate::world::{CONVERGE, Conn, POD_PORT, World, pod, pod_ip};

const PORT: i32 = POD_PORT as i32;

/// A ready endpoint with node and zone hints.
fn hinted(ip: &str, nodes: &[&str], zones: &[&str]) -> Endpoint {
    Endpoint {
        hints: Some(EndpointHints {
            for_nodes: Some(
                nodes
                    .iter()
                    .map(|n| ForNode {
                        name: (*n).to_owned(),
                    })
                    .collect(),
            ),
            for_zones: Some(
                zones
                    .iter()
                    .map(|z| ForZone {
                        name: (*z).to_owned(),
                    })
                    .collect(),
            ),
        }),
        ..endpoint(ip, State::Ready)
    }
}

/// `n` requests on one keep-alive connection through the proxy at `listen`, counted per
/// answering pod.
async fn spread(listen: std::net::SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut conn = Conn::open(listen).await;
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let (status, pod, body) = conn.get("web.e2e", "/").await;
        assert_eq!(status, 200, "{body}");
        *counts.entry(pod.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

pub async fn node_hints_keep_traffic_on_the_node() {
    let mut w = World::new("e2e-topology").await;
    let ips = [pod_ip(9, 11), pod_ip(9, 12), pod_ip(9, 13)];
    let _pods = [
        pod("p1", &ips[0]).await,
        pod("p2", &ips[1]).await,
        pod("p3", &ips[2]).await,
    ];
    w.create_service("web", PORT).await;
    // p3 is for a node without a proxy; every pod is for zone-a.
    let zone = ["zone-a"];
    w.create_slice(
        "web-a",
        "web",
        PORT,
        vec![
            hinted(&ips[0], &["node-proxy-a"], &zone),
            hinted(&ips[1], &["node-proxy-b"], &zone),
            hinted(&ips[2], &["node-c"], &zone),
        ],
    )
    .await;
    w.create_route(&route(&w.ns, "web", &["web.e2e"], "web", PORT))
        .await;
    w.start().await;
    let key = w.set_key("web", POD_PORT);
    let ready: Vec<(String, &str)> = ips
        .iter()
        .map(|ip| (format!("{ip}:{POD_PORT}"), "ready"))
        .collect();
    let ready: Vec<(&str, &str)> = ready.iter().map(|(a, s)| (a.as_str(), *s)).collect();
    w.converged_set(&key, &ready).await;

    let (a, b) = (w.proxies[0].listen, w.proxies[1].listen);
    let through_a = spread(a, 60).await;
    let through_b = spread(b, 60).await;
    eprintln!("s9: node hints: proxy-a {through_a:?}, proxy-b {through_b:?}");
    assert_eq!(
        through_a.keys().collect::<Vec<_>>(),
        ["p1"],
        "proxy-a on node-proxy-a sends only to the pod hinted for its node"
    );
    assert_eq!(
        through_b.keys().collect::<Vec<_>>(),
        ["p2"],
        "proxy-b likewise"
    );

    // One endpoint without node hints: they are ignored (all or nothing, as kube-proxy),
    // and the zone hints, which every endpoint has, keep all three.
    w.set_endpoints(
        "web-a",
        vec![
            hinted(&ips[0], &["node-proxy-a"], &zone),
            hinted(&ips[1], &["node-proxy-b"], &zone),
            hinted(&ips[2], &[], &zone),
        ],
    )
    .await;
    let everywhere = eventually(
        CONVERGE,
        "proxy-a spreads over all three pods once node hints are partial",
        || async {
            let counts = spread(a, 60).await;
            (counts.len() == 3).then_some(counts)
        },
    )
    .await;
    eprintln!("s9: partial node hints: proxy-a {everywhere:?}");
    w.check_processes();
}
