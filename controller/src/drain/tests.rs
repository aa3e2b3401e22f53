//! Table tests of the drain decision (design.md section 10's edge cases, one each).

use std::time::Duration;

use fairway_proto::model::{EndpointSet, RouteTable, Version};
use fairway_proto::testing::{endpoint, set, set_key, table};

use super::decide::{Answer, Decision, PodState, Tracker, Wait, decide, pod_state};
use crate::grpc::proxies::ProxyAck;

const POD: &str = "orders-7d9f8c6b5-00001";
const GRACE: Duration = Duration::from_secs(15);
/// Long past the grace: a controller that has served for a while.
const UP: Duration = Duration::from_secs(600);

fn v(sequence: u64) -> Version {
    Version { epoch: 7, sequence }
}

/// `orders` with three pods; pod 1 marked by `mark`.
fn orders(mark: impl Fn(&mut fairway_proto::model::Endpoint)) -> RouteTable {
    let mut s = set("orders", 3);
    let addr = endpoint(1).addr;
    mark(s.endpoints.get_mut(&addr).expect("pod 1"));
    table([s])
}

fn terminating(e: &mut fairway_proto::model::Endpoint) {
    e.ready = false;
    e.serving = true;
    e.terminating = true;
}

fn ack(id: &str, connected: bool, acked: Option<u64>) -> ProxyAck {
    ProxyAck {
        id: id.into(),
        connected,
        acked: acked.map(v),
    }
}

#[test]
fn pod_state_follows_the_tiers_proxies_pick_from() {
    assert_eq!(
        pod_state(&orders(|_| {}), "shop", POD),
        PodState::Ready {
            set: set_key("orders", 8080)
        }
    );
    assert_eq!(
        pod_state(&orders(terminating), "shop", POD),
        PodState::NoNewRequests,
        "terminating while others are ready: proxies pick the ready ones"
    );
    assert_eq!(
        pod_state(&orders(|e| e.ready = false), "shop", POD),
        PodState::NoNewRequests,
        "not ready (a failing probe) takes no new requests either"
    );
    assert_eq!(
        pod_state(&orders(|_| {}), "other", POD),
        PodState::Absent,
        "a pod of the same name in another namespace is another pod"
    );
    assert_eq!(
        pod_state(&orders(|_| {}), "shop", "web-0"),
        PodState::Absent
    );

    let mut last = EndpointSet::new(set_key("orders", 8080));
    let mut e = endpoint(1);
    terminating(&mut e);
    last.endpoints.insert(e.addr, e.clone());
    let mut other = endpoint(2);
    other.ready = false;
    last.endpoints.insert(other.addr, other);
    assert_eq!(
        pod_state(&table([last]), "shop", POD),
        PodState::LastServing {
            set: set_key("orders", 8080)
        },
        "KEP-1669: no ready endpoint left, so proxies keep sending to the serving one"
    );
}

#[test]
fn a_pod_that_is_no_endpoint_answers_at_once() {
    let mut t = Tracker::default();
    let d = decide(&mut t, v(3), &PodState::Absent, &[], UP, GRACE);
    assert_eq!(d, Decision::Answer(Answer::Unknown));
}

#[test]
fn the_last_serving_endpoint_answers_at_once_with_that_reason() {
    let mut t = Tracker::default();
    let state = PodState::LastServing {
        set: set_key("orders", 8080),
    };
    let lagging = [ack("a", true, Some(1))];
    assert_eq!(
        decide(&mut t, v(3), &state, &lagging, UP, GRACE),
        Decision::Answer(Answer::LastServing {
            set: set_key("orders", 8080)
        }),
        "waiting would not help: proxies keep sending to it"
    );
}

#[test]
fn a_pod_not_yet_terminating_waits_rather_than_being_unknown() {
    let mut t = Tracker::default();
    let state = pod_state(&orders(|_| {}), "shop", POD);
    let d = decide(&mut t, v(3), &state, &[ack("a", true, Some(3))], UP, GRACE);
    assert_eq!(
        d,
        Decision::Wait(Wait::NotTerminating {
            set: set_key("orders", 8080)
        })
    );
}

#[test]
fn waits_until_every_proxy_acked_the_version_that_drained_the_pod() {
    let mut t = Tracker::default();
    let ready = pod_state(&orders(|_| {}), "shop", POD);
    let draining = pod_state(&orders(terminating), "shop", POD);
    let proxies = |a, b| [ack("a", true, Some(a)), ack("b", true, Some(b))];
    decide(&mut t, v(4), &ready, &proxies(4, 4), UP, GRACE);
    assert_eq!(
        decide(&mut t, v(5), &draining, &proxies(5, 4), UP, GRACE),
        Decision::Wait(Wait::Lagging {
            target: v(5),
            proxies: vec![ack("b", true, Some(4))]
        }),
        "b still serves version 4, where the pod was ready"
    );
    // Unrelated versions follow; the target stays the first drained one.
    assert_eq!(
        decide(&mut t, v(9), &draining, &proxies(9, 5), UP, GRACE),
        Decision::Answer(Answer::Drained { version: v(5) })
    );
}

#[test]
fn a_disconnected_proxy_lags_until_it_acks_and_a_removed_pod_counts_as_drained() {
    let mut t = Tracker::default();
    let draining = pod_state(&orders(terminating), "shop", POD);
    let gone = [ack("a", true, Some(6)), ack("b", false, Some(4))];
    assert_eq!(
        decide(&mut t, v(5), &draining, &gone, UP, GRACE),
        Decision::Wait(Wait::Lagging {
            target: v(5),
            proxies: vec![ack("b", false, Some(4))]
        }),
        "a partitioned proxy keeps serving version 4"
    );
    let removed = PodState::Absent;
    let back = [ack("a", true, Some(6)), ack("b", true, Some(6))];
    assert_eq!(
        decide(&mut t, v(6), &removed, &back, UP, GRACE),
        Decision::Answer(Answer::Drained { version: v(5) }),
        "seen before, absent now: removed, not unknown"
    );
    let gone_drained = [ack("b", false, Some(5))];
    let mut t = Tracker::default();
    assert_eq!(
        decide(&mut t, v(5), &draining, &gone_drained, UP, GRACE),
        Decision::Answer(Answer::Drained { version: v(5) }),
        "a gone proxy that acked the drain before it went sends nothing to the pod"
    );
}

#[test]
fn acks_of_another_epoch_do_not_count() {
    let mut t = Tracker::default();
    let draining = pod_state(&orders(terminating), "shop", POD);
    let other = ProxyAck {
        id: "a".into(),
        connected: true,
        acked: Some(Version {
            epoch: 8,
            sequence: 99,
        }),
    };
    let d = decide(
        &mut t,
        v(5),
        &draining,
        std::slice::from_ref(&other),
        UP,
        GRACE,
    );
    assert!(matches!(d, Decision::Wait(Wait::Lagging { .. })), "{d:?}");
}

#[test]
fn a_controller_that_just_started_waits_for_its_proxies_to_return() {
    let mut t = Tracker::default();
    let draining = pod_state(&orders(terminating), "shop", POD);
    let d = decide(&mut t, v(2), &draining, &[], Duration::from_secs(5), GRACE);
    assert_eq!(
        d,
        Decision::Wait(Wait::ControllerStarting {
            remaining: Duration::from_secs(10)
        }),
        "no proxy connected yet is not every proxy drained"
    );
    assert_eq!(
        decide(&mut t, v(2), &draining, &[], GRACE, GRACE),
        Decision::Answer(Answer::Drained { version: v(2) })
    );
}

#[test]
fn a_pod_ready_again_starts_over() {
    let mut t = Tracker::default();
    let draining = pod_state(&orders(terminating), "shop", POD);
    let ready = pod_state(&orders(|_| {}), "shop", POD);
    let lag = [ack("a", true, Some(1))];
    decide(&mut t, v(2), &draining, &lag, UP, GRACE);
    decide(&mut t, v(3), &ready, &lag, UP, GRACE);
    let d = decide(
        &mut t,
        v(4),
        &draining,
        &[ack("a", true, Some(3))],
        UP,
        GRACE,
    );
    assert_eq!(
        d,
        Decision::Wait(Wait::Lagging {
            target: v(4),
            proxies: vec![ack("a", true, Some(3))]
        }),
        "version 3 had the pod ready again: only 4 drains it"
    );
}

mod waiter {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;
    use crate::auth::Pod;
    use crate::drain::wait::{Pending, Waiter};
    use crate::grpc::Proxies;
    use crate::state::NodeZones;
    use crate::store::Store;

    fn pod() -> Pod {
        Pod {
            namespace: "shop".into(),
            name: POD.into(),
            uid: "uid-1".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_when_the_last_proxy_acks_and_names_the_laggard_on_timeout() {
        let store = Store::new();
        let proxies = Proxies::new(Arc::new(NodeZones::default()));
        let v1 = store.publish(orders(|_| {})).expect("first version");
        let (a, b) = (
            proxies.register("a".into(), "node-1".into(), None),
            proxies.register("b".into(), "node-2".into(), None),
        );
        a.acked(v1);
        b.acked(v1);
        let waiter = Waiter {
            store: store.clone(),
            proxies: proxies.clone(),
            grace: Duration::ZERO,
        };
        let w = waiter.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        let task = tokio::spawn(async move { w.wait(&pod(), deadline).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!task.is_finished(), "pod 1 is still ready: it waits");
        let v2 = store
            .publish(orders(terminating))
            .expect("pod 1 terminating");
        a.acked(v2);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!task.is_finished(), "b still serves version 1");
        b.acked(v2);
        let answer = task.await.expect("the waiter does not panic");
        assert_eq!(answer, Ok(Answer::Drained { version: v2 }));

        // Another pod of the same table: b stops acking; the wait ends at its deadline
        // and names b.
        let other = Pod {
            name: "orders-7d9f8c6b5-00002".into(),
            ..pod()
        };
        let v3 = store
            .publish({
                let mut t = orders(terminating);
                let set = t.endpoint_sets.values_mut().next().expect("one set");
                let e = Arc::make_mut(set);
                terminating(e.endpoints.get_mut(&endpoint(2).addr).expect("pod 2"));
                t
            })
            .expect("pod 2 terminating");
        a.acked(v3);
        let outcome = waiter
            .wait(&other, Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(
            outcome,
            Err(Pending::Waiting(Wait::Lagging {
                target: v3,
                proxies: vec![ack_of("b", true, v2)]
            })),
            "b never acked version 3"
        );
    }

    fn ack_of(id: &str, connected: bool, acked: Version) -> ProxyAck {
        ProxyAck {
            id: id.into(),
            connected,
            acked: Some(acked),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_pod_answers_at_once_and_an_unsynced_controller_says_so() {
        let store = Store::new();
        let proxies = Proxies::new(Arc::new(NodeZones::default()));
        let waiter = Waiter {
            store: store.clone(),
            proxies,
            grace: Duration::ZERO,
        };
        let soon = Instant::now() + Duration::from_secs(1);
        assert_eq!(waiter.wait(&pod(), soon).await, Err(Pending::NotSynced));
        store.publish(table([set("web", 2)])).expect("a version");
        let far = Instant::now() + Duration::from_secs(3600);
        let stranger = Pod {
            name: "web-0".into(),
            ..pod()
        };
        assert_eq!(waiter.wait(&stranger, far).await, Ok(Answer::Unknown));
    }
}
