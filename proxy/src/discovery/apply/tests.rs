use fairway_proto::pb::controller_message::Kind;

use super::*;
use crate::discovery::testing::{delta, snapshot, snapshot_with_bad_count, table, v};

/// Feeds every message; returns the answers that are not `Pending`.
fn feed(applier: &mut Applier, msgs: Vec<pb::ControllerMessage>) -> Vec<Step> {
    msgs.into_iter()
        .map(|m| applier.step(m))
        .filter(|s| *s != Step::Pending)
        .collect()
}

fn applied(applier: &mut Applier, msgs: Vec<pb::ControllerMessage>) -> (Arc<RouteTable>, Version) {
    match feed(applier, msgs).as_slice() {
        [Step::Applied(t, v)] => (Arc::clone(t), *v),
        other => panic!("expected exactly one Applied, got {other:?}"),
    }
}

fn nacked(steps: Vec<Step>) -> (Version, ApplyError) {
    match steps.as_slice() {
        [Step::Nack(v, e)] => (*v, e.clone()),
        other => panic!("expected exactly one Nack, got {other:?}"),
    }
}

#[test]
fn snapshot_applies_at_end_only() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    let mut msgs = snapshot(&t1, v(1));
    let end = msgs.pop().expect("end");
    for m in msgs {
        assert_eq!(a.step(m), Step::Pending, "nothing applies before `end`");
        assert_eq!(a.last_applied(), None);
    }
    assert_eq!(a.step(end), Step::Applied(Arc::new(t1), v(1)));
    assert_eq!(a.last_applied(), Some(v(1)));
}

#[test]
fn delta_on_the_served_version_applies_to_a_copy() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    let (served, _) = applied(&mut a, snapshot(&t1, v(1)));
    let t2 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    let (next, version) = applied(&mut a, vec![delta(&t1, &t2, v(1), v(2))]);
    assert_eq!(version, v(2));
    assert_eq!(*next, t2);
    assert_eq!(*served, t1, "the table already served is never mutated");
    assert_eq!(a.last_applied(), Some(v(2)));
}

#[test]
fn delta_on_another_base_is_nacked_and_the_table_kept() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    applied(&mut a, snapshot(&t1, v(1)));
    let t2 = table(&["10.0.0.2:80"]);
    let (version, err) = nacked(feed(&mut a, vec![delta(&t1, &t2, v(5), v(6))]));
    assert_eq!(version, v(6));
    assert_eq!(
        err,
        ApplyError::BaseMismatch {
            version: v(6),
            base: v(5),
            serving: Some(v(1))
        }
    );
    assert_eq!(
        a.last_applied(),
        Some(v(1)),
        "a nack keeps the last good table"
    );
    assert_eq!(a.current().map(|t| &**t), Some(&t1));
}

#[test]
fn delta_before_any_table_is_nacked() {
    let mut a = Applier::new();
    let t1 = table(&[]);
    let (_, err) = nacked(feed(&mut a, vec![delta(&t1, &t1, v(1), v(2))]));
    assert!(
        matches!(err, ApplyError::BaseMismatch { serving: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no table yet"), "{err}");
}

#[test]
fn broken_snapshot_is_nacked_once_and_the_table_kept() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    applied(&mut a, snapshot(&t1, v(1)));
    let t2 = table(&["10.0.0.2:80", "10.0.0.3:80"]);
    let (version, err) = nacked(feed(&mut a, snapshot_with_bad_count(&t2, v(2))));
    assert_eq!(version, v(2));
    assert!(
        matches!(
            err,
            ApplyError::Snapshot {
                source: SnapshotError::CountMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(a.last_applied(), Some(v(1)));
    // The controller answers a nack with a snapshot, which applies.
    let (t, _) = applied(&mut a, snapshot(&t2, v(3)));
    assert_eq!(*t, t2);
}

#[test]
fn a_snapshot_failing_midway_gets_one_nack_not_one_per_message() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    let mut msgs = snapshot(&t1, v(1));
    // A chunk from another version in the middle: the rest of v1 must be ignored.
    let mut stray = msgs[1].clone();
    stray.version = Some(v(9).into());
    msgs.insert(1, stray);
    let steps = feed(&mut a, msgs);
    let (version, _) = nacked(steps);
    assert_eq!(version, v(1));
    assert_eq!(a.last_applied(), None);
}

#[test]
fn delta_in_the_middle_of_a_snapshot_is_nacked_and_the_snapshot_dropped() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    applied(&mut a, snapshot(&t1, v(1)));
    let msgs = snapshot(&t1, v(2));
    assert_eq!(a.step(msgs[0].clone()), Step::Pending);
    let step = a.step(delta(&t1, &t1, v(1), v(3)));
    assert_eq!(
        step,
        Step::Nack(v(3), ApplyError::DeltaDuringSnapshot(v(3)))
    );
    // The rest of the dropped snapshot is skipped, not nacked message by message.
    for m in msgs.into_iter().skip(1) {
        assert_eq!(a.step(m), Step::Pending);
    }
    assert_eq!(a.last_applied(), Some(v(1)));
}

#[test]
fn messages_without_version_or_kind_are_refused() {
    let mut a = Applier::new();
    let step = a.step(pb::ControllerMessage {
        version: None,
        kind: Some(Kind::Begin(pb::SnapshotBegin { zone: None })),
    });
    assert!(
        matches!(step, Step::Invalid(ApplyError::Unversioned(_))),
        "{step:?}"
    );
    let step = a.step(pb::ControllerMessage {
        version: Some(v(1).into()),
        kind: None,
    });
    assert_eq!(step, Step::Nack(v(1), ApplyError::Empty(v(1))));
}

#[test]
fn stream_reset_drops_a_partial_snapshot_but_keeps_the_table() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    applied(&mut a, snapshot(&t1, v(1)));
    let msgs = snapshot(&t1, v(2));
    assert_eq!(a.step(msgs[0].clone()), Step::Pending);
    a.stream_reset();
    assert_eq!(a.last_applied(), Some(v(1)));
    // The new stream may resume with a delta on v1: no snapshot is half-open.
    let t2 = table(&["10.0.0.2:80"]);
    let (t, version) = applied(&mut a, vec![delta(&t1, &t2, v(1), v(3))]);
    assert_eq!((&*t, version), (&t2, v(3)));
}

#[test]
fn a_new_begin_supersedes_an_unfinished_snapshot() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    let t2 = table(&["10.0.0.2:80"]);
    let first = snapshot(&t1, v(1));
    assert_eq!(a.step(first[0].clone()), Step::Pending);
    let second = snapshot(&t2, v(2));
    let steps = feed(&mut a, second);
    assert!(
        matches!(steps.as_slice(), [Step::Nack(n, _), Step::Applied(t, ap)] if *n == v(1) && **t == t2 && *ap == v(2)),
        "the unfinished snapshot is nacked once and the new one applies: {steps:?}"
    );
}

/// The rebase a controller at `version` holding `ours` sends to a proxy serving `theirs`.
fn rebase_message(
    theirs: &RouteTable,
    ours: &RouteTable,
    version: Version,
) -> pb::ControllerMessage {
    use fairway_proto::digest::{TableDigest, rebase};
    let bits = TableDigest::of(theirs).bits();
    let differing = (TableDigest::with_bits(ours, bits))
        .differing(&TableDigest::with_bits(theirs, bits))
        .expect("same bits");
    pb::ControllerMessage {
        version: Some(version.into()),
        kind: Some(Kind::Rebase(rebase(ours, bits, &differing))),
    }
}

#[test]
fn a_rebase_from_another_epoch_gives_the_controllers_table() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    let (served, _) = applied(&mut a, snapshot(&t1, v(1)));
    let restarted = Version {
        epoch: 77,
        sequence: 3,
    };
    let t2 = table(&["10.0.0.2:80", "10.0.0.3:80"]);
    let (next, version) = applied(&mut a, vec![rebase_message(&t1, &t2, restarted)]);
    assert_eq!((version, &*next), (restarted, &t2));
    assert_eq!(*served, t1, "the table already served is never mutated");
    assert_eq!(a.last_applied(), Some(restarted));

    let (same, _) = applied(&mut a, vec![rebase_message(&t2, &t2, v(9))]);
    assert_eq!(*same, t2, "an empty rebase only renumbers");
}

#[test]
fn a_rebase_before_any_table_or_that_does_not_fit_is_nacked() {
    let mut a = Applier::new();
    let t1 = table(&["10.0.0.1:80"]);
    let (version, error) = nacked(feed(&mut a, vec![rebase_message(&t1, &t1, v(1))]));
    assert_eq!(
        (version, error),
        (v(1), ApplyError::RebaseWithoutTable(v(1)))
    );

    applied(&mut a, snapshot(&t1, v(1)));
    let mut bad = rebase_message(&t1, &table(&["10.0.0.9:80"]), v(2));
    if let Some(Kind::Rebase(r)) = &mut bad.kind {
        r.buckets.clear();
    }
    let (version, error) = nacked(feed(&mut a, vec![bad]));
    assert_eq!(version, v(2));
    assert!(matches!(error, ApplyError::Rebase { .. }), "{error}");
    assert_eq!(a.last_applied(), Some(v(1)), "the last good table stays");
}
