use std::net::SocketAddr;
use std::num::NonZeroU16;

use fairway_proto::digest::TableDigest;
use fairway_proto::pb::controller_message::Kind;
use fairway_proto::{Endpoint, EndpointSet, EndpointSetKey, RouteTable};

use super::*;
use crate::store::Store;

/// A table with one set holding endpoints `10.0.0.{1..=n}:8080`.
fn table(n: u16) -> RouteTable {
    let key = EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: NonZeroU16::new(8080).expect("nonzero"),
    };
    let mut set = EndpointSet::new(key);
    for i in 1..=n {
        let addr: SocketAddr = format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
            .parse()
            .expect("addr");
        let ep = Endpoint::ready(addr);
        set.endpoints.insert(ep.addr, ep);
    }
    let mut t = RouteTable::default();
    t.endpoint_sets.insert(set.key.clone(), set.into());
    t
}

fn v(sequence: u64) -> Version {
    Version { epoch: 9, sequence }
}

/// A store at versions 1..=n, version k holding k endpoints.
fn store(n: u16) -> Arc<Store> {
    let store = Store::with_epoch(9);
    for k in 1..=n {
        store.publish(table(k));
    }
    store
}

/// One message per delta, as a proxy of the whole table gets them.
fn each_delta(_from: Version, deltas: &Deltas) -> Option<Vec<Encoded>> {
    Some(Session::each_delta(deltas, |base, version, diff| {
        Encoded::new(&diff.to_message(base, version))
    }))
}

fn plan(session: &mut Session, store: &Store) -> Plan {
    session.plan(
        &store.latest(),
        |from| store.deltas_since(from),
        each_delta,
        |_| None,
    )
}

/// Plans with a rebase builder that answers every digest with `rebase`, and records
/// that it was asked.
fn plan_rebasing(
    session: &mut Session,
    store: &Store,
    rebase: Option<Encoded>,
    asked: &mut bool,
) -> Plan {
    session.plan(
        &store.latest(),
        |from| store.deltas_since(from),
        each_delta,
        |_| {
            *asked = true;
            rebase
        },
    )
}

/// A rebase message at `version` listing no bucket.
fn empty_rebase(version: Version) -> Encoded {
    Encoded::new(&fairway_proto::pb::ControllerMessage {
        version: Some(version.into()),
        kind: Some(Kind::Rebase(Default::default())),
    })
}

fn digest(n: u16) -> Option<TableDigest> {
    Some(TableDigest::of(&table(n)))
}

/// `(base, version)` of each delta message.
fn steps(plan: &Plan) -> Vec<(Version, Version)> {
    let Plan::Deltas(messages) = plan else {
        panic!("expected deltas, got {plan:?}");
    };
    messages
        .iter()
        .map(|m| m.decode().expect("the bytes decode"))
        .map(|m| match &m.kind {
            Some(Kind::Delta(d)) => (
                d.base.expect("base").into(),
                m.table_version().expect("version"),
            ),
            other => panic!("expected a delta, got {other:?}"),
        })
        .collect()
}

fn snapshot_version(plan: &Plan) -> Version {
    match plan {
        Plan::Snapshot(p) => p.version,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[test]
fn nothing_is_sent_before_the_first_version() {
    let store = Store::with_epoch(9);
    let mut s = Session::new(None, false);
    assert!(matches!(plan(&mut s, &store), Plan::Idle));
}

#[test]
fn a_new_proxy_gets_a_snapshot_then_deltas() {
    let store = store(2);
    let mut s = Session::new(None, false);
    assert_eq!(snapshot_version(&plan(&mut s, &store)), v(2));
    assert!(matches!(plan(&mut s, &store), Plan::Idle), "up to date");
    store.publish(table(3));
    store.publish(table(4));
    assert_eq!(
        steps(&plan(&mut s, &store)),
        vec![(v(2), v(3)), (v(3), v(4))]
    );
    assert_eq!(
        s.on_ack(v(2)),
        Answer::Applied {
            version: v(2),
            snapshot: true
        }
    );
    assert_eq!(
        s.on_ack(v(4)),
        Answer::Applied {
            version: v(4),
            snapshot: false
        }
    );
    assert_eq!(
        s.acked(),
        Some(v(4)),
        "v3 was answered implicitly by the later ack"
    );
}

#[test]
fn a_resume_in_history_gets_only_the_changes_since() {
    let store = store(5);
    let from = v(3);
    let mut s = Session::new(Some(from), store.deltas_since(from).is_some());
    assert_eq!(
        s.acked(),
        Some(v(3)),
        "the proxy serves what it resumed from"
    );
    assert_eq!(
        steps(&plan(&mut s, &store)),
        vec![(v(3), v(4)), (v(4), v(5))]
    );
}

#[test]
fn a_resume_from_another_epoch_or_beyond_history_gets_a_snapshot() {
    let store = store(3);
    let other = Version {
        epoch: 8,
        sequence: 3,
    };
    let mut s = Session::new(Some(other), store.deltas_since(other).is_some());
    assert_eq!(snapshot_version(&plan(&mut s, &store)), v(3));

    // Resumable at hello time, but the history moved on before the first plan.
    let mut s = Session::new(Some(v(1)), true);
    let lagging = Store::with_epoch(9);
    for k in 1..=300 {
        lagging.publish(table(k));
    }
    assert_eq!(snapshot_version(&plan(&mut s, &lagging)), v(300));
}

#[test]
fn a_nack_makes_the_next_message_a_snapshot() {
    let store = store(2);
    let mut s = Session::new(None, false);
    snapshot_version(&plan(&mut s, &store));
    s.on_ack(v(2));
    store.publish(table(3));
    store.publish(table(4));
    assert_eq!(
        steps(&plan(&mut s, &store)),
        vec![(v(2), v(3)), (v(3), v(4))]
    );

    assert_eq!(s.on_nack(v(3)), Answer::Resnapshot { version: v(3) });
    assert_eq!(
        snapshot_version(&plan(&mut s, &store)),
        v(4),
        "snapshot after a nack"
    );
    // The proxy also fails v4 (its base was v3, which it never applied): the snapshot
    // already answers that.
    assert_eq!(s.on_nack(v(4)), Answer::Superseded { version: v(4) });
    assert!(
        matches!(plan(&mut s, &store), Plan::Idle),
        "no second snapshot"
    );
    assert_eq!(
        s.on_ack(v(4)),
        Answer::Applied {
            version: v(4),
            snapshot: true
        }
    );
}

#[test]
fn a_nacked_snapshot_is_not_resent_until_the_table_changes() {
    let store = store(1);
    let mut s = Session::new(None, false);
    snapshot_version(&plan(&mut s, &store));
    assert_eq!(s.on_nack(v(1)), Answer::Resnapshot { version: v(1) });
    assert!(
        matches!(plan(&mut s, &store), Plan::Idle),
        "same table, same failure"
    );
    store.publish(table(2));
    assert_eq!(snapshot_version(&plan(&mut s, &store)), v(2));
}

#[test]
fn unknown_answers_are_ignored() {
    let store = store(1);
    let mut s = Session::new(None, false);
    snapshot_version(&plan(&mut s, &store));
    assert_eq!(s.on_ack(v(7)), Answer::Unexpected { version: v(7) });
    assert_eq!(s.on_nack(v(7)), Answer::Unexpected { version: v(7) });
    assert_eq!(s.acked(), None);
}

#[test]
fn an_unanswering_proxy_stops_receiving_until_it_answers() {
    let store = store(1);
    let mut s = Session::new(None, false);
    snapshot_version(&plan(&mut s, &store));
    for k in 2..=(MAX_UNACKED as u16) {
        store.publish(table(k));
        assert_eq!(steps(&plan(&mut s, &store)).len(), 1);
    }
    store.publish(table(MAX_UNACKED as u16 + 1));
    assert!(matches!(plan(&mut s, &store), Plan::Idle), "window full");
    store.publish(table(MAX_UNACKED as u16 + 2));
    s.on_ack(v(MAX_UNACKED as u64));
    assert_eq!(
        steps(&plan(&mut s, &store)),
        vec![
            (v(MAX_UNACKED as u64), v(MAX_UNACKED as u64 + 1)),
            (v(MAX_UNACKED as u64 + 1), v(MAX_UNACKED as u64 + 2)),
        ],
        "catches up from history once it answers"
    );
}

#[test]
fn a_delta_bigger_than_the_limit_goes_as_a_snapshot() {
    let store = store(1);
    let mut s = Session::new(None, false).with_max_delta_bytes(200);
    snapshot_version(&plan(&mut s, &store));
    store.publish(table(2));
    assert_eq!(steps(&plan(&mut s, &store)).len(), 1, "one endpoint fits");
    store.publish(table(40));
    assert_eq!(
        snapshot_version(&plan(&mut s, &store)),
        v(3),
        "38 endpoints do not"
    );
}

#[test]
fn a_proxy_with_a_digest_gets_a_rebase_then_deltas_from_it() {
    let store = store(2);
    let mut s = Session::new(
        Some(Version {
            epoch: 1,
            sequence: 7,
        }),
        false,
    )
    .with_digest(digest(2));
    let mut asked = false;
    let rebase = empty_rebase(v(2));
    match plan_rebasing(&mut s, &store, Some(rebase.clone()), &mut asked) {
        Plan::Rebase(sent) => assert_eq!(sent, rebase),
        other => panic!("expected a rebase, got {other:?}"),
    }
    assert!(
        s.digest().is_none(),
        "the digest answers the first message only"
    );
    assert_eq!(
        s.on_ack(v(2)),
        Answer::Applied {
            version: v(2),
            snapshot: true
        }
    );
    store.publish(table(3));
    assert_eq!(steps(&plan(&mut s, &store)), vec![(v(2), v(3))]);
}

#[test]
fn a_rebase_too_big_to_send_becomes_a_snapshot() {
    let store = store(2);
    let mut s = Session::new(None, false).with_digest(digest(1));
    let mut asked = false;
    let plan = plan_rebasing(&mut s, &store, None, &mut asked);
    assert!(asked, "the rebase was tried");
    assert_eq!(snapshot_version(&plan), v(2));
}

#[test]
fn a_nacked_rebase_is_answered_with_a_snapshot_of_the_same_version() {
    let store = store(2);
    let mut s = Session::new(None, false).with_digest(digest(2));
    let mut asked = false;
    let first = plan_rebasing(&mut s, &store, Some(empty_rebase(v(2))), &mut asked);
    assert!(matches!(first, Plan::Rebase(_)));
    assert_eq!(s.on_nack(v(2)), Answer::Resnapshot { version: v(2) });
    let mut asked_again = false;
    let next = plan_rebasing(&mut s, &store, Some(empty_rebase(v(2))), &mut asked_again);
    assert_eq!(
        snapshot_version(&next),
        v(2),
        "not idle: a snapshot may still apply"
    );
    assert!(!asked_again, "one rebase per stream");
}

#[test]
fn a_resuming_proxy_ignores_its_digest_and_nothing_waits_for_the_first_version() {
    let store = store(5);
    let mut s = Session::new(Some(v(3)), true).with_digest(digest(3));
    assert!(s.digest().is_none());
    assert_eq!(
        steps(&plan(&mut s, &store)),
        vec![(v(3), v(4)), (v(4), v(5))]
    );

    let empty = Store::with_epoch(9);
    let mut s = Session::new(None, false).with_digest(digest(3));
    let mut asked = false;
    assert!(matches!(
        plan_rebasing(&mut s, &empty, None, &mut asked),
        Plan::Idle
    ));
    assert!(
        !asked && s.digest().is_some(),
        "kept until there is a version to rebase to"
    );
}

/// A sidecar whose scope grew gets a delta at the version it already serves (its base
/// is that version), and acks it; nothing else changes for the session.
#[test]
fn a_rescope_sends_a_delta_at_the_same_version() {
    let store = store(2);
    let mut s = Session::new(Some(v(2)), true);
    assert!(matches!(plan(&mut s, &store), Plan::Idle), "up to date");
    s.rescope();
    let scoped = |from: Version, deltas: &Deltas| {
        assert!(deltas.is_empty(), "no version between");
        Some(vec![Encoded::new(
            &TableDiff::default().to_message(from, v(2)),
        )])
    };
    let Plan::Deltas(messages) =
        s.plan(&store.latest(), |f| store.deltas_since(f), scoped, |_| None)
    else {
        panic!("a delta after a rescope");
    };
    let delta = messages[0].decode().expect("decodes");
    let Some(Kind::Delta(d)) = &delta.kind else {
        panic!("a delta: {delta:?}");
    };
    assert_eq!(d.base.map(Version::from), Some(v(2)));
    assert_eq!(delta.table_version().ok(), Some(v(2)));
    assert!(matches!(plan(&mut s, &store), Plan::Idle), "once");
    assert_eq!(
        s.on_ack(v(2)),
        Answer::Applied {
            version: v(2),
            snapshot: false
        }
    );
}

/// A sidecar's encoder may decline (its scope cannot tell what the proxy holds): a
/// snapshot goes instead.
#[test]
fn a_declined_delta_becomes_a_snapshot() {
    let store = store(3);
    let mut s = Session::new(Some(v(1)), true);
    let plan = s.plan(
        &store.latest(),
        |f| store.deltas_since(f),
        |_, _| None,
        |_| None,
    );
    assert_eq!(snapshot_version(&plan), v(3));
}
