//! Load reports on the Discovery stream, against a real controller (`--static-dir` on
//! loopback) and real tonic clients: a proxy that never reports is served as before,
//! reports feed the cluster-wide skew, and none of it touches versions, acks or lag.

mod support;

use std::time::Duration;

use fairway_proto::Version;
use fairway_proto::load::{BackendLoad, EndpointLoad, LoadReport};
use fairway_proto::pb;
use support::*;

const APP: [&str; 2] = ["10.1.0.1", "10.1.0.2"];

async fn controller() -> Controller {
    let slice = slice("orders-1", &APP.map(ready));
    Controller::start(&[
        ("route.yaml", ROUTE),
        ("service.yaml", SERVICE),
        ("slice.yaml", &slice),
    ])
    .await
}

/// A report of `requests[i]` to pod `i`, each expected to take half.
fn report(requests: [u64; 2]) -> LoadReport {
    let total: u64 = requests.iter().sum();
    let endpoints = APP
        .iter()
        .zip(requests)
        .map(|(ip, n)| EndpointLoad {
            addr: endpoint(ready(ip)).addr,
            requests: n,
            in_flight: 0,
            expected: total as f64 / 2.0,
        })
        .collect();
    LoadReport {
        window: Duration::from_secs(5),
        backends: vec![BackendLoad {
            route: route_key(),
            set: set_key(),
            endpoints,
        }],
        truncated: false,
        accepts_figures: false,
    }
}

/// A proxy `id` connected and holding the first snapshot, acked.
async fn synced(c: &Controller, id: &str) -> (TestProxy, Version) {
    let mut proxy = c.connect(id, None).await;
    let version = proxy.next().await.version();
    proxy.ack(version).await;
    (proxy, version)
}

/// `/metrics`, once `done` holds for it.
async fn metrics_when(c: &Controller, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(c.admin, "/metrics").await;
        assert_eq!(status, 200);
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never showed on /metrics:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn the_controller_asks_and_a_proxy_that_never_reports_is_served_as_before() {
    let c = controller().await;
    let (proxy, v1) = synced(&c, "old-proxy").await;
    assert_eq!(
        proxy
            .headers
            .get("fairway-load-report-ms")
            .map(|v| v.to_str().ok()),
        Some(Some("2000")),
        "the controller asks for a report every 2 s"
    );
    let body = metrics_when(&c, "the old proxy's ack", |m| {
        value(
            m,
            r#"fairway_controller_proxy_lag_versions{proxy="old-proxy"}"#,
        ) == Some(0.0)
    })
    .await;
    assert!(
        !body.contains("fairway_controller_route_share_skew{"),
        "no report, no figure:\n{body}"
    );
    let info = c.proxies.list();
    assert_eq!(info[0].last_acked, Some(v1));
    c.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn reports_feed_the_cluster_skew_and_touch_no_version() {
    let c = controller().await;
    let (mut a, v1) = synced(&c, "proxy-a").await;
    let (b, _) = synced(&c, "proxy-b").await;
    // Each proxy sends 3 of 4 requests to the first pod: the cluster does too.
    a.send(pb::ProxyMessage::report(&report([30, 10]))).await;
    b.send(pb::ProxyMessage::report(&report([30, 10]))).await;
    let body = metrics_when(&c, "the route's skew", |m| {
        value(
            m,
            r#"fairway_controller_load_reports_total{result="accepted"}"#,
        ) == Some(2.0)
    })
    .await;
    assert_eq!(
        value(
            &body,
            r#"fairway_controller_route_share_skew{route="shop/orders"}"#
        ),
        Some(0.5),
        "60 of 80 where 40 was fair:\n{body}"
    );
    // A second report right away comes faster than asked: dropped, the first stays.
    b.send(pb::ProxyMessage::report(&report([10, 30]))).await;
    let body = metrics_when(&c, "the dropped report", |m| {
        value(
            m,
            r#"fairway_controller_load_reports_total{result="dropped"}"#,
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(
            &body,
            r#"fairway_controller_route_share_skew{route="shop/orders"}"#
        ),
        Some(0.5)
    );
    // Versions and lag are untouched, and the next version flows and is acked as usual.
    for proxy in ["proxy-a", "proxy-b"] {
        let series = format!(r#"fairway_controller_proxy_lag_versions{{proxy="{proxy}"}}"#);
        assert_eq!(value(&body, &series), Some(0.0), "{proxy}:\n{body}");
    }
    assert!(c.proxies.list().iter().all(|p| p.last_acked == Some(v1)));
    c.write("slice.yaml", &slice("orders-1", &[ready(APP[0])]));
    let v2 = a.next().await.version();
    assert!(v2 > v1, "a new version after the slice change");
    a.ack(v2).await;
    metrics_when(&c, "proxy-a on the new version", |m| {
        value(
            m,
            r#"fairway_controller_proxy_lag_versions{proxy="proxy-a"}"#,
        ) == Some(0.0)
            && value(m, "fairway_controller_table_version") == Some(v2.sequence as f64)
    })
    .await;
    c.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_message_of_a_kind_the_controller_does_not_know_is_ignored() {
    // What a newer proxy's additions look like to this controller.
    let c = controller().await;
    let (mut proxy, v1) = synced(&c, "newer-proxy").await;
    proxy.send(pb::ProxyMessage { kind: None }).await;
    c.write("slice.yaml", &slice("orders-1", &[ready(APP[1])]));
    let v2 = proxy.next().await.version();
    assert!(v2 > v1, "the stream stays open and keeps delivering");
    c.shutdown().await.expect("clean shutdown");
}

/// A report with `in_flight[i]` requests in flight to pod `i`.
fn in_flight(in_flight: [u32; 2], accepts_figures: bool) -> LoadReport {
    let mut report = report([0, 0]);
    for (e, n) in report.backends[0].endpoints.iter_mut().zip(in_flight) {
        e.in_flight = n;
    }
    report.accepts_figures = accepts_figures;
    report
}

#[tokio::test]
async fn a_proxy_that_accepts_figures_gets_the_others_in_flight_in_answer() {
    let c = controller().await;
    let (mut a, _) = synced(&c, "proxy-a").await;
    let (mut b, _) = synced(&c, "proxy-b").await;
    b.send(pb::ProxyMessage::report(&in_flight([9, 1], false)))
        .await;
    metrics_when(&c, "b's report", |m| {
        value(
            m,
            r#"fairway_controller_load_reports_total{result="accepted"}"#,
        ) == Some(1.0)
    })
    .await;
    a.send(pb::ProxyMessage::report(&in_flight([2, 0], true)))
        .await;
    let message = a.message().await.expect("stream healthy").expect("open");
    let Some(pb::controller_message::Kind::Figures(figures)) = message.kind else {
        panic!("figures in answer to the report: {message:?}");
    };
    assert_eq!(message.version, None, "outside the versioned sequence");
    let figures = fairway_proto::load::LoadFigures::try_from(figures).expect("valid figures");
    let pods: Vec<_> = APP.iter().map(|ip| endpoint(ready(ip)).addr).collect();
    assert_eq!(
        figures.sets,
        [(set_key(), vec![(pods[0], 9), (pods[1], 1)])],
        "b's requests in flight, not a's own"
    );
    // b did not ask: nothing but versions ever reaches it.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b.message())
            .await
            .is_err(),
        "no figures for a proxy that does not accept them"
    );
    c.shutdown().await.expect("clean shutdown");
}
