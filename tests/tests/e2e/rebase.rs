//! Scenario 10: a restarted controller resends only what changed. The proxies name
//! their table's digest in their hello; the new controller (another epoch, so no delta
//! can apply) answers each with a rebase of the buckets that differ instead of a
//! snapshot. One Service changes while the controller is down; the other is not resent
//! and keeps serving.

use std::collections::BTreeMap;

use fairway_tests::objects::{State, endpoint, route};

use crate::world::{Conn, POD_PORT, World, http_get, pod, pod_ip};

const PORT: i32 = POD_PORT as i32;

/// `n` requests for `host` on one keep-alive connection, counted per answering pod.
async fn spread(listen: std::net::SocketAddr, host: &str, n: usize) -> BTreeMap<String, usize> {
    let mut conn = Conn::open(listen).await;
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let (status, pod, body) = conn.get(host, "/").await;
        assert_eq!(status, 200, "{host}: {body}");
        *counts.entry(pod.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

/// `fairway_controller_versions_sent_total{kind="KIND"}` on the controller's /metrics
/// (0 when absent: nothing of that kind was sent).
async fn versions_sent(w: &World, kind: &str) -> u64 {
    let (status, text) = (http_get(w.admin, "/metrics").await)
        .unwrap_or_else(|| panic!("the controller's /metrics did not answer"));
    assert_eq!(status, 200, "controller /metrics");
    let series = format!("fairway_controller_versions_sent_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| {
            value
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{line}: {e}", line = value))
        })
}

pub async fn restarted_controller_rebases_proxies() {
    let mut w = World::new("e2e-rebase").await;
    let ips: Vec<String> = (11..=13).map(|h| pod_ip(10, h)).collect();
    let _pods = [
        pod("left-1", &ips[0]).await,
        pod("right-1", &ips[1]).await,
        pod("right-2", &ips[2]).await,
    ];
    for (service, ip) in [("left", &ips[0]), ("right", &ips[1])] {
        w.create_service(service, PORT).await;
        let slice = format!("{service}-a");
        (w.create_slice(&slice, service, PORT, vec![endpoint(ip, State::Ready)])).await;
        let host = format!("{service}.e2e");
        w.create_route(&route(&w.ns, service, &[host.as_str()], service, PORT))
            .await;
    }
    w.start().await;
    let right = w.set_key("right", POD_PORT);
    let one = format!("{}:{POD_PORT}", ips[1]);
    let before = w.converged_set(&right, &[(&one, "ready")]).await;
    assert!(
        versions_sent(&w, "Snapshot").await >= 2,
        "each proxy started from a snapshot"
    );

    // A change while no controller runs, then a new controller on the same ports.
    w.kill_controller();
    let both = vec![
        endpoint(&ips[1], State::Ready),
        endpoint(&ips[2], State::Ready),
    ];
    w.set_endpoints("right-a", both).await;
    w.start_controller().await;
    let two = format!("{}:{POD_PORT}", ips[2]);
    let after = (w.converged_set(&right, &[(&one, "ready"), (&two, "ready")])).await;
    let (rebases, snapshots) = (
        versions_sent(&w, "Rebase").await,
        versions_sent(&w, "Snapshot").await,
    );
    eprintln!(
        "s10: {before} -> {after}: the new controller sent {rebases} rebases, {snapshots} snapshots"
    );
    assert_ne!(before.epoch, after.epoch, "a new controller is a new epoch");
    assert_eq!(snapshots, 0, "no proxy needed a snapshot after the restart");
    assert!(
        rebases >= 2,
        "each proxy came back with a rebase: {rebases}"
    );

    for p in &w.proxies {
        let left = spread(p.listen, "left.e2e", 20).await;
        assert_eq!(
            left.keys().collect::<Vec<_>>(),
            ["left-1"],
            "{}: left kept: {left:?}",
            p.id
        );
        let right = spread(p.listen, "right.e2e", 40).await;
        assert_eq!(
            right.keys().collect::<Vec<_>>(),
            ["right-1", "right-2"],
            "{}: right-2, added while the controller was down, gets traffic: {right:?}",
            p.id
        );
    }
    w.check_processes();
}
