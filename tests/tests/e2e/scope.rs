//! Scenario 16: a sidecar's scoped table against the real apiserver and controller
//! (issue 17). A proxy that says `mode: SIDECAR` in its hello is sent the Routes users
//! declared but no implicit Service until it subscribes to one by its ClusterIP and
//! port (allocated by the apiserver); the subscription arrives as a delta at the same
//! version, later changes to that Service follow endpoint by endpoint, and a change to a
//! Service it never subscribed to reaches it as an empty delta, so it acks every
//! version and the controller shows no lag for it.
//!
//! The sidecar's side is a raw Discovery client here (the proxy binary through real
//! capture is `cargo test -p fairway-tests --test sidecar subscribe`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use fairway_proto::diff::{TableDiff, apply};
use fairway_proto::pb::{self, controller_message::Kind, discovery_client::DiscoveryClient};
use fairway_proto::scope::{HelloScope, ProxyMode, ServiceDestination};
use fairway_proto::snapshot::SnapshotAssembler;
use fairway_proto::{RouteTable, Version};
use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::world::{CONVERGE, POD_PORT, World, http_get, pod_ip};

const SIDECAR: &str = "scope-sidecar";

/// An implicit (labelled) Service with a ClusterIP the apiserver allocates, and its
/// slice with `endpoints`; returns the ClusterIP.
async fn implicit_service(w: &World, name: &str, endpoints: &[String]) -> IpAddr {
    let api: Api<Service> = Api::namespaced(w.client.clone(), &w.ns);
    let mut svc = fairway_tests::objects::service(&w.ns, name, "http", i32::from(POD_PORT));
    svc.metadata.labels = Some(BTreeMap::from([(
        "fairway.dev/implicit".to_owned(),
        "enabled".to_owned(),
    )]));
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = None;
    }
    let created = (api.create(&PostParams::default(), &svc).await)
        .unwrap_or_else(|e| panic!("create Service {name}: {e}"));
    let ip = created
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap_or_else(|| panic!("the apiserver allocated no ClusterIP for {name}"));
    let slice = endpoints
        .iter()
        .map(|ip| endpoint(ip, State::Ready))
        .collect();
    w.create_slice(&format!("{name}-a"), name, i32::from(POD_PORT), slice)
        .await;
    ip.parse().expect("a ClusterIP")
}

/// The sidecar's stream: what it sends and what it receives.
struct Sidecar {
    tx: mpsc::Sender<pb::ProxyMessage>,
    inbound: tonic::Streaming<pb::ControllerMessage>,
}

impl Sidecar {
    async fn next(&mut self) -> pb::ControllerMessage {
        tokio::time::timeout(CONVERGE, self.inbound.message())
            .await
            .expect("a controller message in time")
            .expect("the stream is healthy")
            .expect("the stream is open")
    }

    async fn send(&self, message: pb::ProxyMessage) {
        self.tx.send(message).await.expect("the stream is open");
    }

    /// The next message, which must be a delta from `base`: its version and changes.
    async fn delta(&mut self, base: Version) -> (Version, TableDiff) {
        let message = self.next().await;
        let version = message.table_version().expect("a version");
        let Some(Kind::Delta(delta)) = message.kind else {
            panic!("a delta, got {message:?}");
        };
        let (from, diff) = TableDiff::from_proto(delta).expect("a valid delta");
        assert_eq!(from, base, "based on the version the sidecar serves");
        (version, diff)
    }
}

fn names(table: &RouteTable) -> (Vec<String>, Vec<String>) {
    (
        table.routes.keys().map(|k| k.name.clone()).collect(),
        table
            .endpoint_sets
            .keys()
            .map(|k| k.service.clone())
            .collect(),
    )
}

/// The controller's `/metrics` series `name{proxy="scope-sidecar"}`.
async fn sidecar_metric(w: &World, name: &str) -> Option<u64> {
    let (_, body) = http_get(w.admin, "/metrics").await?;
    let series = format!("{name}{{proxy=\"{SIDECAR}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
}

pub async fn a_sidecar_gets_implicit_services_it_subscribes_to() {
    let mut w = World::new("e2e-scope").await;
    let orders_ip = implicit_service(&w, "orders", &[pod_ip(16, 1)]).await;
    let _other = implicit_service(&w, "other", &[pod_ip(16, 9)]).await;
    w.start_controller().await;

    let (tx, rx) = mpsc::channel(16);
    let hello = pb::ProxyMessage::hello(SIDECAR, "node-x", None, None).with_scope(&HelloScope {
        mode: ProxyMode::Sidecar,
        subscriptions: Vec::new(),
    });
    tx.send(hello).await.expect("queue the hello");
    let mut client = DiscoveryClient::connect(format!("http://{}", w.grpc))
        .await
        .expect("connect to the controller");
    let response = (client.stream(ReceiverStream::new(rx)).await).expect("open the stream");
    assert!(
        response.metadata().contains_key("fairway-subscribe"),
        "the controller says it takes subscriptions"
    );
    let mut sidecar = Sidecar {
        tx,
        inbound: response.into_inner(),
    };

    // Both Services are implicit: the whole table holds both, the sidecar neither.
    let mut assembler = SnapshotAssembler::new();
    let (mut version, mut table) = loop {
        let message = sidecar.next().await;
        let version = message.table_version().expect("a version");
        if let Some(table) = assembler.feed(message).expect("a valid snapshot") {
            break (version, table);
        }
    };
    assert_eq!(
        names(&table),
        (vec![], vec![]),
        "no implicit Service unsubscribed"
    );
    sidecar.send(pb::ProxyMessage::ack(version)).await;

    // Subscribe by the captured destination: the Service arrives at the same version.
    let destination = ServiceDestination::new(SocketAddr::new(orders_ip, POD_PORT));
    sidecar.send(pb::ProxyMessage::subscribe(destination)).await;
    let (at, diff) = sidecar.delta(version).await;
    assert_eq!(at, version, "a subscription is no new version");
    apply(&mut table, &diff);
    assert_eq!(
        names(&table),
        (
            vec![format!("orders:{POD_PORT}")],
            vec!["orders".to_owned()]
        ),
        "the implicit Route and its set"
    );
    sidecar.send(pb::ProxyMessage::ack(version)).await;
    let what = "the controller counts the sidecar's subscription";
    eventually(CONVERGE, what, || async {
        (sidecar_metric(&w, "fairway_controller_proxy_subscriptions").await == Some(1))
            .then_some(())
    })
    .await;

    // A change to `other` only: a new version, and nothing in it for the sidecar.
    w.set_endpoints(
        "other-a",
        vec![
            endpoint(&pod_ip(16, 9), State::Ready),
            endpoint(&pod_ip(16, 10), State::Ready),
        ],
    )
    .await;
    let (next, diff) = sidecar.delta(version).await;
    assert!(next > version, "a new version");
    assert!(diff.is_empty(), "an empty delta: {diff:?}");
    version = next;
    sidecar.send(pb::ProxyMessage::ack(version)).await;
    let what = "no lag for the sidecar after a version it holds nothing of";
    eventually(CONVERGE, what, || async {
        (sidecar_metric(&w, "fairway_controller_proxy_lag_versions").await == Some(0)).then_some(())
    })
    .await;

    // A change to `orders`: one endpoint.
    w.set_endpoints(
        "orders-a",
        vec![
            endpoint(&pod_ip(16, 1), State::Ready),
            endpoint(&pod_ip(16, 2), State::Ready),
        ],
    )
    .await;
    let (next, diff) = sidecar.delta(version).await;
    assert!(next > version);
    assert_eq!(diff.sets.len(), 1, "{diff:?}");
    assert_eq!(
        diff.sets[0].upsert.len(),
        1,
        "one endpoint, not the set: {diff:?}"
    );
    apply(&mut table, &diff);
    let orders = table.endpoint_sets.values().next().expect("the set");
    assert_eq!(orders.endpoints.len(), 2);
    assert_eq!(orders.cluster_ips, vec![orders_ip]);
}
