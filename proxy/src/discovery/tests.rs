//! The discovery client against a real, scripted tonic Discovery server on loopback:
//! each test plays the controller message by message and checks the proxy's answers
//! and its published table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fairway_proto::model::{RouteTable, Version};
use fairway_proto::pb;
use fairway_proto::scope::{HelloScope, ProxyMode, ServiceDestination};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::testing::{Controller, WAIT, delta, snapshot, snapshot_with_bad_count, table, v};
use super::{Backoff, Client, DiscoveryConfig};
use crate::metrics::Metrics;
use crate::table::TableHandle;

/// Small backoff so reconnects happen within the test, yet still grow and jitter.
const TEST_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(5),
    cap: Duration::from_millis(40),
};

struct Proxy {
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    stop: oneshot::Sender<()>,
    client: JoinHandle<()>,
}

impl Proxy {
    fn start(controller: SocketAddr) -> Proxy {
        Proxy::start_in(controller, Some("zone-1"))
    }

    /// A proxy whose `--zone` is `zone` (`None`: not set).
    fn start_in(controller: SocketAddr, zone: Option<&str>) -> Proxy {
        Proxy::start_as(
            controller,
            zone,
            ProxyMode::Explicit,
            TableHandle::default(),
        )
    }

    /// A proxy in `mode` publishing into `table`.
    fn start_as(
        controller: SocketAddr,
        zone: Option<&str>,
        mode: ProxyMode,
        table: TableHandle,
    ) -> Proxy {
        let table = Arc::new(table);
        let metrics = Arc::new(Metrics::new(true));
        let config = DiscoveryConfig {
            controller: format!("http://{controller}").parse().expect("uri"),
            tls: None,
            token_file: None,
            id: "proxy-0".into(),
            node: "node-a".into(),
            zone: zone.map(str::to_owned),
            namespace: None,
            mode,
            backoff: TEST_BACKOFF,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let client = Client::new(config, Arc::clone(&table), Arc::clone(&metrics));
        let client = tokio::spawn(client.run(async {
            let _ = stopped.await;
        }));
        Proxy {
            table,
            metrics,
            stop,
            client,
        }
    }

    fn served(&self) -> (Option<Version>, Arc<RouteTable>) {
        let t = self.table.load();
        (t.version, Arc::clone(&t.source))
    }

    fn counter(&self, series: &str) -> u64 {
        let text = self.metrics.encode();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.client)
            .await
            .expect("discovery stops on shutdown")
            .expect("client task");
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn snapshot_is_applied_then_acked() {
    let mut controller = Controller::start(loopback()).await;
    let proxy = Proxy::start(controller.addr);
    assert!(!proxy.table.is_ready(), "not ready before the first table");
    let mut stream = controller.accept().await;
    assert_eq!(stream.hello.proxy_id, "proxy-0");
    assert_eq!(stream.hello.node, "node-a");
    assert_eq!(stream.hello.zone.as_deref(), Some("zone-1"));
    assert_eq!(
        stream.hello.last_applied, None,
        "a fresh proxy asks for a snapshot"
    );

    let t1 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    assert!(proxy.table.is_ready(), "ready once a table is applied");
    assert_eq!(
        proxy.served(),
        (Some(v(1)), Arc::new(t1)),
        "published before the ack"
    );
    assert_eq!(
        proxy.counter(r#"fairway_proxy_discovery_updates_total{result="applied"}"#),
        1
    );
    assert_eq!(proxy.counter("fairway_proxy_table_version"), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn delta_is_applied_then_acked() {
    let mut controller = Controller::start(loopback()).await;
    let proxy = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    let t1 = table(&["10.0.0.1:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));

    let t2 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    stream.send(vec![delta(&t1, &t2, v(1), v(2))]).await;
    assert_eq!(stream.answer().await, Ok(v(2)));
    assert_eq!(proxy.served(), (Some(v(2)), Arc::new(t2)));
    proxy.shutdown().await;
}

#[tokio::test]
async fn delta_on_a_wrong_base_is_nacked_and_the_table_kept() {
    let mut controller = Controller::start(loopback()).await;
    let proxy = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    let t1 = table(&["10.0.0.1:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    let before = proxy.table.load();

    let t2 = table(&["10.0.0.9:80"]);
    stream.send(vec![delta(&t1, &t2, v(4), v(5))]).await;
    let (version, reason) = stream.answer().await.expect_err("a wrong base is nacked");
    assert_eq!(version, v(5));
    assert!(
        reason.contains("based on 7.4"),
        "the nack says why: {reason}"
    );
    assert!(
        Arc::ptr_eq(&before, &proxy.table.load()),
        "a nacked delta must not touch the published table"
    );
    assert_eq!(
        proxy.counter(r#"fairway_proxy_discovery_updates_total{result="nacked"}"#),
        1
    );

    // After a nack the controller sends a snapshot, which applies on the same stream.
    stream.send(snapshot(&t2, v(6))).await;
    assert_eq!(stream.answer().await, Ok(v(6)));
    assert_eq!(proxy.served(), (Some(v(6)), Arc::new(t2)));
    proxy.shutdown().await;
}

#[tokio::test]
async fn broken_snapshot_is_nacked_and_the_table_kept() {
    let mut controller = Controller::start(loopback()).await;
    let proxy = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    let t1 = table(&["10.0.0.1:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    let before = proxy.table.load();

    let t2 = table(&["10.0.0.2:80", "10.0.0.3:80"]);
    stream.send(snapshot_with_bad_count(&t2, v(2))).await;
    let (version, reason) = stream
        .answer()
        .await
        .expect_err("a count mismatch is nacked");
    assert_eq!(version, v(2));
    assert!(
        reason.contains("endpoints"),
        "the nack names the count: {reason}"
    );
    assert!(
        Arc::ptr_eq(&before, &proxy.table.load()),
        "a broken snapshot must not touch the published table"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn losing_the_controller_keeps_the_table_and_the_return_resumes() {
    let mut controller = Controller::start(loopback()).await;
    let proxy = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    let t1 = table(&["10.0.0.1:80"]);
    let t2 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    stream.send(vec![delta(&t1, &t2, v(1), v(2))]).await;
    assert_eq!(stream.answer().await, Ok(v(2)));

    // The controller goes away entirely: stream closed, listener gone.
    drop(stream);
    let addr = controller.stop().await;
    let reconnects = |p: &Proxy| p.counter("fairway_proxy_discovery_reconnects_total");
    tokio::time::timeout(WAIT, async {
        while reconnects(&proxy) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client keeps retrying while the controller is away");
    assert_eq!(
        proxy.served(),
        (Some(v(2)), Arc::new(t2.clone())),
        "the last table keeps serving while the controller is away"
    );
    assert!(proxy.table.is_ready(), "still ready without a controller");
    assert_eq!(proxy.counter("fairway_proxy_discovery_connected"), 0);

    // It comes back on the same address: the proxy resumes from v2.
    let mut controller = Controller::start(addr).await;
    let mut stream = controller.accept().await;
    assert_eq!(
        stream.hello.last_applied,
        Some(v(2).into()),
        "the new hello resumes from the last applied version"
    );
    let t3 = table(&["10.0.0.2:80", "10.0.0.3:80"]);
    stream.send(vec![delta(&t2, &t3, v(2), v(3))]).await;
    assert_eq!(stream.answer().await, Ok(v(3)), "the resume delta applies");
    assert_eq!(proxy.served(), (Some(v(3)), Arc::new(t3)));
    assert_eq!(proxy.counter("fairway_proxy_discovery_connected"), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_stream_ended_by_the_controller_is_reopened_with_last_applied() {
    let mut controller = Controller::start(loopback()).await;
    let proxy = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    let t1 = table(&["10.0.0.1:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    // Half a snapshot, then the stream ends: the partial snapshot must not leak.
    let t2 = table(&["10.0.0.2:80"]);
    let mut partial = snapshot(&t2, v(2));
    partial.pop();
    stream.send(partial).await;
    drop(stream);

    let stream = controller.accept().await;
    assert_eq!(stream.hello.last_applied, Some(v(1).into()));
    assert_eq!(proxy.served(), (Some(v(1)), Arc::new(t1)));
    proxy.shutdown().await;
}

/// A snapshot whose `SnapshotBegin` carries `zone`, as the controller sends it.
fn snapshot_in_zone(t: &RouteTable, version: Version, zone: &str) -> Vec<pb::ControllerMessage> {
    let mut messages = snapshot(t, version);
    messages[0].kind = Some(pb::controller_message::Kind::Begin(pb::SnapshotBegin {
        zone: Some(zone.to_owned()),
    }));
    messages
}

#[tokio::test]
async fn the_controllers_zone_is_used_only_without_a_zone_flag() {
    let mut controller = Controller::start(loopback()).await;
    let unset = Proxy::start_in(controller.addr, None);
    let mut stream = controller.accept().await;
    assert_eq!(stream.hello.zone, None, "no --zone: the hello says nothing");
    stream
        .send(snapshot_in_zone(&table(&["10.0.0.1:80"]), v(1), "zone-9"))
        .await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    assert_eq!(
        unset.table.load().zone.as_deref(),
        Some("zone-9"),
        "the Node's zone"
    );
    unset.shutdown().await;

    let set = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    stream
        .send(snapshot_in_zone(&table(&["10.0.0.1:80"]), v(1), "zone-9"))
        .await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    assert_eq!(
        set.table.load().zone.as_deref(),
        Some("zone-1"),
        "--zone wins"
    );
    set.shutdown().await;
}

mod reports;

fn destination(addr: &str) -> ServiceDestination {
    ServiceDestination::new(addr.parse().expect("a socket address"))
}

/// A sidecar says so in its hello with what it subscribed to before, sends each new
/// destination once on its stream, and lists them all again after a reconnect; a proxy
/// of the whole table says nothing of the kind.
#[tokio::test]
async fn a_sidecar_subscribes_once_per_destination_and_again_in_each_hello() {
    let mut controller = Controller::start(loopback()).await;
    let handle = TableHandle::default();
    let (a, b) = (destination("10.96.0.10:8080"), destination("10.96.0.11:80"));
    handle.wanted().want(a, std::time::Instant::now());
    let proxy = Proxy::start_as(controller.addr, None, ProxyMode::Sidecar, handle);
    let mut stream = controller.accept().await;
    assert_eq!(
        stream.hello.scope(),
        HelloScope {
            mode: ProxyMode::Sidecar,
            subscriptions: vec![a],
        }
    );
    let t1 = table(&["10.0.0.1:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));

    proxy.table.wanted().want(b, std::time::Instant::now());
    proxy.table.wanted().want(b, std::time::Instant::now());
    match stream.next_kind().await {
        pb::proxy_message::Kind::Subscribe(s) => assert_eq!(s.destination(), Ok(b)),
        other => panic!("a subscription, got {other:?}"),
    }
    // A duplicate would arrive here instead of the ack (`answer` fails on it).
    let t2 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    stream.send(vec![delta(&t1, &t2, v(1), v(2))]).await;
    assert_eq!(stream.answer().await, Ok(v(2)));

    drop(stream);
    let stream = controller.accept().await;
    assert_eq!(
        stream.hello.scope().subscriptions,
        vec![a, b],
        "kept across streams"
    );
    proxy.shutdown().await;

    let mut controller = Controller::start(loopback()).await;
    let explicit = Proxy::start(controller.addr);
    explicit.table.wanted().want(a, std::time::Instant::now());
    let stream = controller.accept().await;
    assert_eq!(
        stream.hello.scope(),
        HelloScope::default(),
        "no mode: explicit"
    );
    explicit.shutdown().await;
}
