use std::net::SocketAddr;
use std::num::NonZeroU16;

use fairway_proto::diff::apply;
use fairway_proto::{Endpoint, EndpointSet, EndpointSetKey};

use super::*;

fn key(service: &str) -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: service.into(),
        port: NonZeroU16::new(8080).expect("nonzero"),
    }
}

/// A table with one set holding endpoints `10.0.0.{1..=n}:8080`.
fn table(n: u8) -> RouteTable {
    let mut set = EndpointSet::new(key("orders"));
    for i in 1..=n {
        let addr: SocketAddr = format!("10.0.0.{i}:8080").parse().expect("addr");
        let ep = Endpoint::ready(addr);
        set.endpoints.insert(ep.addr, ep);
    }
    let mut t = RouteTable::default();
    t.endpoint_sets.insert(set.key.clone(), set.into());
    t
}

fn v(epoch: u64, sequence: u64) -> Version {
    Version { epoch, sequence }
}

#[test]
fn decide_waits_before_sync_and_skips_unchanged() {
    let t = table(2);
    assert_eq!(decide(false, false, &t, &table(3)), Decision::Wait);
    assert_eq!(decide(true, true, &t, &t), Decision::Unchanged);
    assert!(
        matches!(decide(true, false, &RouteTable::default(), &RouteTable::default()), Decision::Publish(d) if d.is_empty()),
        "the first version is published even when the table is empty"
    );
    assert!(
        matches!(decide(true, true, &t, &table(3)), Decision::Publish(d) if d.endpoint_changes() == 1)
    );
}

#[test]
fn deltas_since_chains_bases_and_knows_its_limits() {
    let store = Store::with_epoch(7);
    assert!(!store.is_ready(), "nothing published yet");
    assert_eq!(store.publish(table(1)), Some(v(7, 1)));
    assert_eq!(
        store.publish(table(1)),
        None,
        "an unchanged table is no version"
    );
    assert_eq!(store.publish(table(2)), Some(v(7, 2)));
    assert_eq!(store.publish(table(3)), Some(v(7, 3)));
    assert!(store.is_ready());

    let deltas = store.deltas_since(v(7, 1)).expect("in history");
    let steps: Vec<_> = deltas.iter().map(|(b, v, _)| (*b, *v)).collect();
    assert_eq!(steps, vec![(v(7, 1), v(7, 2)), (v(7, 2), v(7, 3))]);
    let mut t = table(1);
    for (_, _, d) in &deltas {
        apply(&mut t, d);
    }
    assert_eq!(t, table(3), "the deltas take version 1 to the latest table");

    assert_eq!(store.deltas_since(v(7, 3)), Some(Vec::new()), "up to date");
    assert_eq!(
        store.deltas_since(v(8, 1)),
        None,
        "another epoch gets a snapshot"
    );
    assert_eq!(
        store.deltas_since(v(7, 0)),
        None,
        "nothing applied gets a snapshot"
    );
    assert_eq!(
        store.deltas_since(v(7, 9)),
        None,
        "a version from the future"
    );
}

#[test]
fn history_drops_the_oldest_versions() {
    let mut h = History::new(1, 3, usize::MAX);
    let now = Instant::now();
    for seq in 1..=5 {
        h.push(v(1, seq), Arc::new(diff(&table(0), &table(1))), now);
    }
    assert_eq!(h.len(), 3);
    assert_eq!(
        h.deltas_since(v(1, 1)),
        None,
        "version 2 fell out of history"
    );
    assert_eq!(h.deltas_since(v(1, 2)).map(|d| d.len()), Some(3));
    assert_eq!(h.published_at(v(1, 4)), Some(now));
    assert_eq!(h.published_at(v(1, 1)), None);
}

#[test]
fn history_is_bounded_by_changes_but_keeps_the_newest() {
    let mut h = History::new(1, 100, 10);
    let now = Instant::now();
    let big = Arc::new(diff(&table(0), &table(20)));
    h.push(v(1, 1), big.clone(), now);
    h.push(v(1, 2), big, now);
    assert_eq!(
        h.len(),
        1,
        "only the newest entry survives an oversize history"
    );
    assert_eq!(h.latest(), v(1, 2));
    assert_eq!(h.deltas_since(v(1, 1)).map(|d| d.len()), Some(1));
}

#[test]
fn fresh_epochs_are_nonzero_and_differ() {
    let a = fresh_epoch();
    let b = fresh_epoch();
    assert_ne!(a, 0);
    assert_ne!(a, b, "two stores in one process get different epochs");
}

#[test]
fn a_lone_change_waits_one_window() {
    let (t0, window) = (tokio::time::Instant::now(), Duration::from_millis(20));
    assert_eq!(publish_at(t0, t0, window), t0 + window);
}

#[test]
fn each_change_of_a_burst_restarts_the_window() {
    let (t0, window) = (tokio::time::Instant::now(), Duration::from_millis(20));
    let last = t0 + Duration::from_millis(30);
    assert_eq!(
        publish_at(t0, last, window),
        last + window,
        "a change 30 ms into the burst moves the read to 50 ms"
    );
}

#[test]
fn a_burst_that_never_stops_is_read_after_the_cap() {
    let (t0, window) = (tokio::time::Instant::now(), Duration::from_millis(20));
    let cap = t0 + window * COALESCE_CAP_WINDOWS;
    for late in [90, 99, 150, 10_000] {
        let last = t0 + Duration::from_millis(late);
        assert_eq!(
            publish_at(t0, last, window),
            cap,
            "a change {late} ms into the burst cannot delay the first change past {} ms",
            (window * COALESCE_CAP_WINDOWS).as_millis()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn publisher_waits_for_sync_and_coalesces() {
    let index = IndexHandle::new();
    let store = Store::with_epoch(3);
    let mut latest = store.subscribe();
    tokio::spawn(store.clone().run(index.clone(), Duration::from_millis(20)));

    index.update(|_| crate::index::Changes {
        routes: [fairway_proto::RouteKey {
            namespace: "a".into(),
            name: "b".into(),
        }]
        .into(),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        latest.borrow().is_initial(),
        "nothing is published before the sync"
    );

    index.mark_synced();
    tokio::time::timeout(Duration::from_secs(1), latest.changed())
        .await
        .expect("the first version follows the sync")
        .expect("store alive");
    assert_eq!(latest.borrow_and_update().version, v(3, 1));

    // A burst of wake-ups inside one window is one read and no new version (the
    // table did not change).
    for _ in 0..50 {
        index.update(|_| crate::index::Changes {
            routes: [fairway_proto::RouteKey {
                namespace: "a".into(),
                name: "b".into(),
            }]
            .into(),
            ..Default::default()
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !latest.has_changed().expect("alive"),
        "an unchanged table is no version"
    );
}

/// The patch of every key that differs between `old` and `new`, read from `new`.
fn patch_between(old: &RouteTable, new: &RouteTable) -> Patch {
    let d = diff(old, new);
    let mut changes = crate::index::Changes::default();
    changes
        .routes
        .extend(d.routes_upserted.iter().map(|r| r.key.clone()));
    changes.routes.extend(d.routes_removed.iter().cloned());
    changes
        .endpoint_sets
        .extend(d.sets.iter().map(|s| s.key.clone()));
    changes.endpoint_sets.extend(d.sets_removed.iter().cloned());
    Patch::read(new, &changes)
}

#[test]
fn patches_publish_the_same_tables_as_full_reads() {
    let store = Store::with_epoch(4);
    assert_eq!(
        store.publish_patch(&Patch::default()),
        None,
        "the first version must be a full table"
    );
    store.publish(table(1));
    let mut held = Vec::new();
    for n in [3, 2, 5, 5, 1, 4] {
        let before = store.latest();
        let version = store.publish_patch(&patch_between(&before.table, &table(n)));
        if n == 5 && before.table.endpoint_count() == 5 {
            assert_eq!(version, None, "an unchanged patch is no version");
            continue;
        }
        let latest = store.latest();
        assert_eq!(
            *latest.table,
            table(n),
            "version {} holds the patched table",
            latest.version
        );
        assert_eq!(*latest.diff, diff(&before.table, &table(n)));
        // A reader holding an old version forces the recycled table to be copied:
        // the old version must stay intact.
        held.push((latest.clone(), table(n)));
    }
    for (published, expected) in &held {
        assert_eq!(*published.table, *expected, "a held version never changes");
    }
}

#[test]
fn a_patch_diff_looks_only_at_its_keys() {
    let old = table(3);
    let new = table(1);
    let patch = patch_between(&old, &new);
    assert_eq!(patch.diff_from(&old), diff(&old, &new));
    assert!(Patch::default().diff_from(&old).is_empty());
}
