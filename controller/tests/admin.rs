//! The admin endpoints of a running controller: probes, metrics and debug.

mod support;

use std::sync::Arc;

use fairway_controller::admin::{AdminState, handle};
use fairway_controller::grpc::Proxies;
use fairway_controller::metrics::Metrics;
use fairway_controller::state::{IndexHandle, NodeZones};
use fairway_controller::store::Store;
use hyper::Method;
use support::*;

#[tokio::test]
async fn probes_metrics_and_debug() {
    let c = Controller::start(&[
        ("route.yaml", ROUTE),
        ("service.yaml", SERVICE),
        (
            "slice.yaml",
            &slice("orders-1", &[ready("10.1.0.1"), ready("10.1.0.2")]),
        ),
    ])
    .await;
    assert_eq!(get(c.admin, "/live").await.0, 200);
    assert_eq!(
        get(c.admin, "/ready").await.0,
        200,
        "ready after the first sync"
    );
    assert_eq!(get(c.admin, "/nothing").await.0, 404);

    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, _) = proxy.next().await.snapshot();
    proxy.ack(v1).await;

    let (status, metrics) = get(c.admin, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "fairway_controller_proxies_connected 1",
        "fairway_controller_proxy_lag_versions{proxy=\"proxy-1\"}",
        "fairway_controller_push_duration_seconds_bucket",
        "fairway_controller_index_routes 1",
        "fairway_controller_index_endpoint_sets 1",
        "fairway_controller_index_endpoints 2",
        "fairway_controller_versions_sent_total{kind=\"Snapshot\"} 1",
    ] {
        assert!(
            metrics.contains(name),
            "/metrics lacks {name:?}:\n{metrics}"
        );
    }

    let (status, body) = get(c.admin, "/debug/routes").await;
    assert_eq!(status, 200);
    let debug: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(debug["routes"][0]["key"], "shop/orders");
    assert_eq!(debug["endpointSets"][0]["endpoints"][0]["state"], "ready");
    assert_eq!(
        debug["statuses"][0]["resolvedRefs"]["status"], "True",
        "{debug:#}"
    );
    assert_eq!(
        debug["version"],
        v1.to_string(),
        "versions print as \"EPOCH.SEQUENCE\" strings, like the proxy's, so no JSON reader rounds the epoch"
    );
    c.shutdown().await.expect("clean shutdown");
}

#[test]
fn not_ready_before_the_first_sync() {
    let zones = Arc::new(NodeZones::default());
    let state = AdminState {
        index: IndexHandle::new(),
        store: Store::new(),
        proxies: Proxies::new(zones),
        metrics: Arc::new(Metrics::new()),
        event_streams: Default::default(),
    };
    assert_eq!(handle(&state, &Method::GET, "/ready").status(), 503);
    assert_eq!(handle(&state, &Method::GET, "/live").status(), 200);
    assert_eq!(handle(&state, &Method::POST, "/live").status(), 404);
}
