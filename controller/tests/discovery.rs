//! The Discovery protocol end to end: a controller in `--static-dir` mode on loopback,
//! real tonic clients, real files edited under it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use fairway_controller::grpc::{DiscoveryService, Proxies, serve};
use fairway_controller::metrics::Metrics;
use fairway_controller::state::{IndexHandle, NodeZones};
use fairway_controller::store::Store;
use fairway_proto::Version;
use fairway_proto::diff::{EndpointSetChange, TableDiff};
use fairway_proto::pb::{self, controller_message::Kind};
use support::*;
use tokio::sync::watch;

const APP: [&str; 3] = ["10.1.0.1", "10.1.0.2", "10.1.0.3"];

async fn controller() -> Controller {
    let slice = slice("orders-1", &APP.map(ready));
    Controller::start(&[
        ("route.yaml", ROUTE),
        ("service.yaml", SERVICE),
        ("slice.yaml", &slice),
    ])
    .await
}

/// The diff of one endpoint set changing by `upsert` and `remove`.
fn set_diff(upsert: Vec<Ep<'_>>, remove: &[&str]) -> TableDiff {
    TableDiff {
        sets: vec![EndpointSetChange {
            upsert: upsert.into_iter().map(endpoint).collect(),
            remove: remove.iter().map(|ip| endpoint(ready(ip)).addr).collect(),
            ..EndpointSetChange::new(set_key())
        }],
        ..TableDiff::default()
    }
}

#[tokio::test]
async fn snapshot_then_one_endpoint_per_delta() {
    let c = controller().await;
    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, table) = proxy.next().await.snapshot();
    assert_eq!(
        table,
        expected_table(&APP.map(ready)),
        "the snapshot is the whole table"
    );
    assert_eq!(v1, c.version());
    proxy.ack(v1).await;

    // Each edit is one version carrying exactly the endpoint that changed: added,
    // removed, un-readied, terminating.
    let steps: Vec<(Vec<Ep<'_>>, TableDiff)> = vec![
        (
            vec![
                ready(APP[0]),
                ready(APP[1]),
                ready(APP[2]),
                ready("10.1.0.4"),
            ],
            set_diff(vec![ready("10.1.0.4")], &[]),
        ),
        (
            vec![ready(APP[0]), ready(APP[1]), ready("10.1.0.4")],
            set_diff(vec![], &[APP[2]]),
        ),
        // Neither ready nor serving: out of the set, so proxies drain it.
        (
            vec![
                (APP[0], false, false, false),
                ready(APP[1]),
                ready("10.1.0.4"),
            ],
            set_diff(vec![], &[APP[0]]),
        ),
        (
            vec![
                (APP[0], false, false, false),
                (APP[1], false, true, true),
                ready("10.1.0.4"),
            ],
            set_diff(vec![(APP[1], false, true, true)], &[]),
        ),
    ];
    let mut base = v1;
    for (endpoints, expected) in steps {
        c.write("slice.yaml", &slice("orders-1", &endpoints));
        let (got_base, version, diff, bytes) = proxy.next().await.delta();
        assert_eq!(diff, expected, "exactly the endpoint that changed");
        assert_eq!(got_base, base, "each delta builds on the previous version");
        assert!(
            bytes < 200,
            "one endpoint is a small message, got {bytes} bytes"
        );
        assert_eq!(proxy.table, expected_table(&endpoints));
        proxy.ack(version).await;
        base = version;
    }

    // The last ack is what the controller reports as applied.
    let applied = wait_applied(&c, "proxy-1", base).await;
    assert_eq!(applied, base);
    let (status, body) = get(c.admin, "/debug/routes").await;
    assert_eq!(status, 200);
    let debug: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let proxy_json = &debug["proxies"][0];
    assert_eq!(proxy_json["id"], "proxy-1");
    assert_eq!(proxy_json["applied"], base.to_string(), "{debug:#}");
    assert_eq!(proxy_json["lagVersions"], 0);
}

/// Waits until the registry shows `id` acked `version`.
async fn wait_applied(c: &Controller, id: &str, version: Version) -> Version {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let acked = c
            .proxies
            .list()
            .into_iter()
            .find(|p| p.id == id)
            .and_then(|p| p.last_acked);
        if acked == Some(version) {
            return version;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never showed {version} applied; last {acked:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_reconnect_gets_only_the_changes_since() {
    let c = controller().await;
    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, _) = proxy.next().await.snapshot();
    proxy.ack(v1).await;
    drop(proxy);

    c.write(
        "slice.yaml",
        &slice(
            "orders-1",
            &[
                ready(APP[0]),
                ready(APP[1]),
                ready(APP[2]),
                ready("10.1.0.9"),
            ],
        ),
    );
    let v2 = c.wait_version_after(v1).await;

    let mut proxy = c.connect("proxy-1", Some(v1)).await;
    let (base, version, diff, _) = proxy.next().await.delta();
    assert_eq!(
        (base, version),
        (v1, v2),
        "resumed from what the proxy applied"
    );
    assert_eq!(
        diff,
        set_diff(vec![ready("10.1.0.9")], &[]),
        "only the change since"
    );
}

#[tokio::test]
async fn another_epoch_or_no_version_gets_a_snapshot() {
    let c = controller().await;
    let stale = Version {
        epoch: c.version().epoch.wrapping_add(1),
        sequence: c.version().sequence,
    };
    let mut proxy = c.connect("proxy-1", Some(stale)).await;
    let (version, table) = proxy.next().await.snapshot();
    assert_eq!(version, c.version());
    assert_eq!(table, expected_table(&APP.map(ready)));
}

#[tokio::test]
async fn after_a_nack_the_next_message_is_a_snapshot() {
    let c = controller().await;
    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, _) = proxy.next().await.snapshot();
    proxy.ack(v1).await;

    c.write("slice.yaml", &slice("orders-1", &[ready(APP[0])]));
    let (_, v2, _, _) = proxy.next().await.delta();
    proxy.nack(v2, "pretend the delta did not apply").await;

    let first = proxy.message().await.expect("healthy").expect("open");
    assert!(
        matches!(first.kind, Some(Kind::Begin(_))),
        "a snapshot begins right after the nack, got {first:?}"
    );
    assert_eq!(first.table_version().expect("version"), v2);

    let nacked = c
        .proxies
        .list()
        .into_iter()
        .find(|p| p.id == "proxy-1")
        .and_then(|p| p.last_nack);
    assert_eq!(
        nacked,
        Some((v2, "pretend the delta did not apply".to_owned()))
    );
}

#[tokio::test]
async fn deleting_the_route_file_removes_the_route() {
    let c = controller().await;
    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, _) = proxy.next().await.snapshot();
    proxy.ack(v1).await;

    c.remove("route.yaml");
    let (_, _, diff, _) = proxy.next().await.delta();
    assert_eq!(diff.routes_removed, vec![route_key()]);
    assert_eq!(
        diff.sets_removed,
        vec![set_key()],
        "no Route uses the set any more"
    );
    assert!(proxy.table.routes.is_empty() && proxy.table.endpoint_sets.is_empty());
}

#[tokio::test]
async fn bad_yaml_in_one_file_leaves_the_others_served() {
    let c = controller().await;
    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, _) = proxy.next().await.snapshot();
    proxy.ack(v1).await;

    c.write(
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: [broken\n",
    );
    c.write(
        "other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    // A valid edit elsewhere proves the polls went by: it arrives alone.
    c.write(
        "slice.yaml",
        &slice("orders-1", &[ready(APP[0]), ready(APP[1])]),
    );
    let (_, _, diff, _) = proxy.next().await.delta();
    assert_eq!(
        diff,
        set_diff(vec![], &[APP[2]]),
        "the broken Service file removed nothing"
    );

    let mut fresh = c.connect("proxy-2", None).await;
    let (_, table) = fresh.next().await.snapshot();
    assert_eq!(table, expected_table(&[ready(APP[0]), ready(APP[1])]));
}

#[tokio::test]
async fn one_endpoint_change_among_5000_is_under_1_kib() {
    // Five slices of 1,000 endpoints (the EndpointSlice maximum).
    let ips: Vec<String> = (0..5000)
        .map(|i| format!("10.2.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let slices: Vec<(String, String)> = ips
        .chunks(1000)
        .enumerate()
        .map(|(n, chunk)| {
            let eps: Vec<Ep<'_>> = chunk.iter().map(|ip| ready(ip)).collect();
            (
                format!("slice-{n}.yaml"),
                slice(&format!("orders-{n}"), &eps),
            )
        })
        .collect();
    let mut files: Vec<(&str, &str)> = vec![("route.yaml", ROUTE), ("service.yaml", SERVICE)];
    files.extend(slices.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    let c = Controller::start(&files).await;

    let mut proxy = c.connect("proxy-1", None).await;
    let snapshot = proxy.next().await;
    let Received::Snapshot {
        version: v1,
        table,
        bytes,
    } = snapshot
    else {
        panic!("expected a snapshot");
    };
    assert_eq!(table.endpoint_count(), 5000);
    proxy.ack(v1).await;

    // Un-ready one endpoint in the third slice.
    let mut eps: Vec<Ep<'_>> = ips[2000..3000].iter().map(|ip| ready(ip)).collect();
    eps[500].1 = false;
    eps[500].2 = false;
    c.write("slice-2.yaml", &slice("orders-2", &eps));
    let (_, _, diff, delta_bytes) = proxy.next().await.delta();
    assert_eq!(diff.endpoint_changes(), 1);
    assert!(
        delta_bytes < 1024,
        "one endpoint change is {delta_bytes} bytes on the wire (snapshot: {bytes})"
    );
    eprintln!("5,000-endpoint set: snapshot {bytes} bytes, one-endpoint delta {delta_bytes} bytes");
}

#[tokio::test]
async fn quick_writes_are_coalesced() {
    let c = controller().await;
    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, _) = proxy.next().await.snapshot();
    proxy.ack(v1).await;

    // 50 index changes in a burst, as a watcher would deliver them.
    let ips: Vec<String> = (1..=50).map(|i| format!("10.3.0.{i}")).collect();
    for n in 1..=ips.len() {
        let eps: Vec<Ep<'_>> = ips[..n].iter().map(|ip| ready(ip)).collect();
        let text = slice("orders-burst", &eps);
        let object: k8s_openapi::api::discovery::v1::EndpointSlice =
            serde_saphyr::from_str(&text).expect("slice");
        c.index.update(|idx| idx.apply_slice(&object));
    }
    let updates = tokio::time::timeout(WAIT, async {
        let mut versions = 0;
        while proxy.table.endpoint_count() < 53 {
            let received = proxy.next().await;
            proxy.ack(received.version()).await;
            versions += 1;
        }
        versions
    })
    .await
    .expect("the burst arrives");
    assert!(
        updates <= 5,
        "50 writes in a burst became {updates} versions"
    );
    assert_eq!(c.version().sequence - v1.sequence, updates as u64);
}

#[tokio::test]
async fn streams_end_cleanly_on_shutdown() {
    let c = controller().await;
    let mut proxy = c.connect("proxy-1", None).await;
    let (v1, _) = proxy.next().await.snapshot();
    proxy.ack(v1).await;
    let stopping = tokio::spawn(c.shutdown());
    let end = proxy.message().await;
    assert!(
        matches!(end, Ok(None)),
        "the stream ends with status OK, got {end:?}"
    );
    stopping
        .await
        .expect("join")
        .expect("run returns Ok after shutdown");
}

/// The server on its own, fed by an index the test controls.
async fn bare_server() -> (Arc<IndexHandle>, String, watch::Sender<bool>) {
    let index = IndexHandle::new();
    let store = Store::new();
    tokio::spawn(store.clone().run(index.clone(), Duration::from_millis(1)));
    let (stop, stopping) = watch::channel(false);
    let proxies = Proxies::new(Arc::new(NodeZones::default()));
    let service = DiscoveryService::new(store, proxies, Arc::new(Metrics::new()), stopping.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let mut stopped = stopping;
    tokio::spawn(serve(listener, service, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    (index, endpoint, stop)
}

#[tokio::test]
async fn unavailable_until_the_first_sync() {
    let (index, endpoint, _stop) = bare_server().await;
    let refused = TestProxy::connect(&endpoint, "proxy-1", None)
        .await
        .err()
        .expect("refused before the sync");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");

    index.mark_synced();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut proxy = loop {
        match TestProxy::connect(&endpoint, "proxy-1", None).await {
            Ok(proxy) => break proxy,
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still unavailable after the sync"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(status) => panic!("unexpected {status}"),
        }
    };
    let (version, table) = proxy.next().await.snapshot();
    assert_eq!(version.sequence, 1, "the first version is the synced table");
    assert!(table.routes.is_empty());
}

#[tokio::test]
async fn the_first_message_must_be_a_hello() {
    let (index, endpoint, _stop) = bare_server().await;
    index.mark_synced();
    let ack = pb::ProxyMessage::ack(Version {
        epoch: 1,
        sequence: 1,
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    let refused = loop {
        match TestProxy::connect_with(&endpoint, ack.clone()).await {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(tokio::time::Instant::now() < deadline, "never synced");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => break other.err().expect("refused"),
        }
    };
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");

    let nameless = pb::ProxyMessage::hello("", "node", None, None);
    let refused = TestProxy::connect_with(&endpoint, nameless)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
}
