//! The controller survives an apiserver outage: etcd and kube-apiserver stop and start
//! again (same data) under a running controller and a connected proxy; afterwards a
//! change reaches the same stream and Route status is current again.
//!
//! Its own test binary, hence its own cluster: the restart would break other tests'
//! requests.

use std::time::Duration;

use fairway_tests::controller;
use fairway_tests::discovery::TestProxy;
use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint, route, service, slice};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

const CONNECT: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(30);
/// Stopping and booting etcd plus a cold apiserver on 2 cores.
const RESTART: Duration = Duration::from_secs(240);
/// After the restart the watchers reconnect with backoff (up to ~30 s between tries).
const CONVERGE: Duration = Duration::from_secs(120);
const PORT: i32 = 8080;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_restart_is_survived_and_the_table_converges() {
    let cluster = controller::cluster_with_crd();
    let ns = (cluster.namespace("ctl-restart").await).unwrap_or_else(|e| panic!("{e}"));
    let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
    let pp = PostParams::default();
    let create = |result: Result<(), kube::Error>, what: &str| {
        result.unwrap_or_else(|e| panic!("create {what}: {e}"));
    };
    let services = Api::namespaced(client.clone(), &ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let routes = Api::namespaced(client.clone(), &ns);
    let svc = service(&ns, "orders", "http", PORT);
    create(services.create(&pp, &svc).await.map(drop), "Service");
    let first = vec![endpoint("10.244.9.1", State::Ready)];
    let s = slice(&ns, "orders-a", "orders", "http", PORT, first);
    create(slices.create(&pp, &s).await.map(drop), "EndpointSlice");
    let r = route(&ns, "orders", &["orders.shop"], "orders", PORT);
    create(routes.create(&pp, &r).await.map(drop), "Route");

    let controller = (controller::start(cluster, &ns).await).unwrap_or_else(|e| panic!("{e}"));
    let mut proxy = (TestProxy::connect(&controller.endpoint, "restart", None, CONNECT).await)
        .unwrap_or_else(|e| panic!("{e}"));
    (proxy
        .until(CHANGE, "the first table", |t| t.endpoint_count() == 1)
        .await)
        .unwrap_or_else(|e| panic!("{e}"));

    let restart = tokio::task::spawn_blocking(|| cluster.restart());
    (tokio::time::timeout(RESTART, restart).await)
        .unwrap_or_else(|_| panic!("the apiserver did not restart within {RESTART:?}"))
        .unwrap_or_else(|e| panic!("restart task: {e}"))
        .unwrap_or_else(|e| panic!("restart: {e}"));

    // The first requests after the restart may meet stale connections: retry them.
    let both = vec![
        endpoint("10.244.9.1", State::Ready),
        endpoint("10.244.9.2", State::Ready),
    ];
    let patch = serde_json::json!({ "endpoints": both });
    eventually(CONVERGE, "the slice patched after the restart", || async {
        let params = PatchParams::default();
        slices
            .patch("orders-a", &params, &Patch::Merge(&patch))
            .await
            .ok()
    })
    .await;
    let what = "the post-restart endpoint on the same stream";
    (proxy
        .until(CONVERGE, what, |t| t.endpoint_count() == 2)
        .await)
        .unwrap_or_else(|e| panic!("{e}"));

    let routes: Api<fairway_controller::crd::Route> = routes;
    eventually(CONVERGE, "status counting both endpoints", || async {
        let route = routes.get("orders").await.ok()?;
        let ready = route.status?.endpoints?.ready;
        (ready == 2).then_some(())
    })
    .await;
    controller.stop().await;
}
